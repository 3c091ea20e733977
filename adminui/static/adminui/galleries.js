// The galleries page: keep "All slots" / "Only the slots ticked below" in step with the ticks
// (without JavaScript the server asks the operator to choose when they disagree).
"use strict";

const galleryForm = document.getElementById("gallery-form");
if (galleryForm) {
  const allSlots = document.getElementById("gallery-slots-all");
  const chosenSlots = document.getElementById("gallery-slots-chosen");
  galleryForm.addEventListener("change", (event) => {
    const input = event.target;
    if (input.name === "slot_ids" && input.checked) {
      chosenSlots.checked = true;
    } else if (input === allSlots && allSlots.checked) {
      galleryForm.querySelectorAll('input[name="slot_ids"]').forEach((tick) => {
        tick.checked = false;
      });
    }
  });
}

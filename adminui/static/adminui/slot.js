// The slot page's enhancements; every form works without JavaScript.
"use strict";

(() => {
  // Choosing another provider or operation shows its settings at once (the "Change
  // provider/operation" button, pressed for you; nothing is saved).
  const changeButton = document.querySelector("[data-change-button]");
  if (changeButton) {
    for (const id of ["id_provider", "id_operation"]) {
      document.getElementById(id)?.addEventListener("change", () => {
        changeButton.form?.requestSubmit(changeButton);
      });
    }
  }

  // A template select shows a preview of the chosen template.
  document.querySelectorAll("select[data-preview]").forEach((select) => {
    select.addEventListener("change", () => {
      const image = document.getElementById(select.dataset.preview);
      const none = document.getElementById(select.dataset.noPreview);
      const option = select.selectedOptions[0];
      const url = option?.dataset.previewUrl || "";
      if (!image) return;
      if (url) {
        image.src = url;
        image.alt = `Preview of ${option.textContent.trim()}`;
      } else {
        image.removeAttribute("src");
      }
      image.hidden = !url;
      if (none) none.hidden = Boolean(url);
    });
  });

  // An upload takes a moment: say so on the button (and prevent a second submit).
  document.querySelectorAll("button[data-busy-text]").forEach((button) => {
    button.form?.addEventListener("submit", () => {
      button.disabled = true;
      button.textContent = button.dataset.busyText;
    });
  });

  // A test run's page follows its job until it is done, then shows the result.
  const run = document.querySelector("[data-status-url]");
  if (run) {
    const status = document.getElementById("try-status");
    const every = Number(run.dataset.refreshSeconds || 2) * 1000;
    const poll = async () => {
      try {
        const response = await fetch(run.dataset.statusUrl, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (response.redirected) {
          // The session ended (sent to the login page): let the page itself say so.
          window.location.reload();
          return;
        }
        if (response.ok) {
          const state = await response.json();
          if (status && state.text) status.textContent = state.text;
          if (state.done) {
            window.location.reload();
            return;
          }
        }
      } catch {
        // A network hiccup: try again on the next tick.
      }
      setTimeout(poll, every);
    };
    setTimeout(poll, every);
  }
})();

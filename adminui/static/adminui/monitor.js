// Live lists: an element with data-live-src is refreshed from that address every
// data-live-interval milliseconds (the server answers just the fragment). Updates stop when the
// fragment says it is final (data-live-done), pause while the tab is hidden, and a
// [data-live-toggle] button lets the reader pause and resume them. Without JavaScript the page's
// "Refresh" link does the same by hand.
"use strict";

(() => {
  const DEFAULT_INTERVAL = 3000;

  function startLive(container) {
    const source = new URL(container.dataset.liveSrc, window.location.href);
    const interval = Number(container.dataset.liveInterval) || DEFAULT_INTERVAL;
    const toggle = document.querySelector(`[data-live-toggle="${container.id}"]`);
    let paused = false;
    let stopped = false;
    let timer = null;
    let busy = false;

    function schedule() {
      window.clearTimeout(timer);
      if (!paused && !stopped) timer = window.setTimeout(refresh, interval);
    }

    function stop() {
      stopped = true;
      window.clearTimeout(timer);
      if (toggle) toggle.hidden = true;
    }

    async function refresh() {
      if (busy || paused || stopped) return;
      if (document.hidden) { schedule(); return; }
      busy = true;
      try {
        const response = await fetch(source, {
          credentials: "same-origin",
          headers: { "Accept": "text/html" },
          cache: "no-store",
        });
        if (response.redirected || !response.ok) {
          // Logged out, permission gone or filters refused: leave the page as it is.
          stop();
          return;
        }
        const html = await response.text();
        // Keep the reader's place: do not swap while something inside has the focus.
        if (!container.contains(document.activeElement) || document.activeElement === document.body) {
          container.innerHTML = html;
        }
        if (container.querySelector("[data-live-done]")) stop();
      } catch (error) {
        // Network hiccup: try again at the next tick.
      } finally {
        busy = false;
        schedule();
      }
    }

    if (toggle) {
      toggle.hidden = false;
      toggle.addEventListener("click", () => {
        paused = !paused;
        toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
        if (!paused) refresh();
        else window.clearTimeout(timer);
      });
    }
    if (container.querySelector("[data-live-done]")) { stop(); return; }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !paused && !stopped) refresh();
    });
    schedule();
  }

  function init() {
    document.querySelectorAll("[data-live-src]").forEach(startLive);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

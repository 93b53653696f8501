/* What a page does for a keyboard: a box that scrolls sideways (a long line of code, a wide table or output) is a
   Tab stop with a name, so that the arrow keys scroll it; a box that fits is not (nothing to reach). Checked when
   the page loads, when it is resized and when a kernel-free widget redraws. */
(function () {
  "use strict";
  var BOXES = ".jp-InputArea-editor, .jp-OutputArea-output, .mha-table-scroll, .mha-sw-html, " +
              "mjx-container[display='true'], .jp-RenderedMarkdown";

  // A name for the box, unique on the page (each is a landmark region): what it is, and where (the cell's prompt).
  function name(box, i) {
    var what = box.classList.contains("jp-InputArea-editor") ? "code" :
      box.classList.contains("mha-table-scroll") ? "table" :
      box.tagName.toLowerCase() === "mjx-container" ? "formula" :
      box.classList.contains("jp-RenderedMarkdown") ? "text" : "output";
    var cell = box.closest(".jp-Cell");
    var prompt = cell && cell.querySelector(".jp-InputPrompt");
    var where = prompt && prompt.textContent.trim() ? " of cell " + prompt.textContent.trim().replace(/:$/, "") : "";
    return what + where + " (box " + (i + 1) + "), scroll sideways to read the rest";
  }

  function mark() {
    Array.prototype.forEach.call(document.querySelectorAll(BOXES), function (box, i) {
      var wide = box.scrollWidth > box.clientWidth + 1;
      if (wide && box.dataset.mhaScroll !== "yes") {
        box.dataset.mhaScroll = "yes";
        box.tabIndex = 0;
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", name(box, i));
      } else if (!wide && box.dataset.mhaScroll === "yes") {
        delete box.dataset.mhaScroll;
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    });
  }

  var pending = null;
  function later() {
    if (pending) { return; }
    pending = window.requestAnimationFrame(function () { pending = null; mark(); });
  }
  function start() {
    mark();
    window.addEventListener("resize", later);
    document.addEventListener("input", later);
    document.addEventListener("change", later);
    window.addEventListener("load", later);
    document.documentElement.dataset.mhaScrollChecked = "true";
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

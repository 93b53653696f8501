/* Kernel-free widgets: every state was computed when the site was built (site/widget_export.py, driving
   the live widget), so moving a control only swaps saved outputs. No kernel, no request to another origin.

   Each <div class="mha-static-widget"> holds a <script type="application/json"> spec:
     controls:  [{name, label, kind: "slider"|"select"|"checkbox", options, value, keys}]
     slots:     [{name, type: "html"|"image"|"status", parts: [[control names], ...]}]
     rows:      [[control or slot names], ...]   (the status is not drawn: a screen reader hears it)
     values:    {slot: [{part key: value}, ...]}  (one map per part; an image's value is {src, alt})
     reachable: null (every combination) or [full keys];  initial: the starting full key
   A key joins "name=" + keys[i] of the part's controls with "|" (the full key: every control, in order); what a
   slot shows is the concatenation of its parts' values for the current controls.
   After each update the widget's dataset says what it shows: data-state (the full key) and data-updated (a time
   stamp); data-preloaded counts the figures it fetches once it is near the screen, data-decoded those ready. */
(function () {
  "use strict";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function setup(root, number) {
    var specNode = root.querySelector("script.mha-static-widget-spec");
    if (!specNode || root.dataset.ready === "true") { return; }
    var spec = JSON.parse(specNode.textContent);
    var index = {};            // control name -> index of its current option
    var inputs = {};           // control name -> its <input>/<select>
    var outputs = {};          // slot name -> its element
    var readouts = {};         // slider name -> the <span> showing its value
    var byName = {};           // control name -> control
    var reachable = spec.reachable ? new Set(spec.reachable) : null;
    var said = {};             // status slot -> its parts' last values (to announce what changed)

    spec.controls.forEach(function (c) {
      byName[c.name] = c;
      index[c.name] = Math.max(0, c.options.indexOf(c.value));
    });

    function keyOf(idx, names) {
      return names.map(function (n) { return n + "=" + byName[n].keys[idx[n]]; }).join("|");
    }
    var allNames = spec.controls.map(function (c) { return c.name; });
    function fullKey(idx) { return keyOf(idx, allNames); }
    function isReachable(idx) { return reachable === null || reachable.has(fullKey(idx)); }

    // If the live widget cannot be in the chosen combination (enlarge head 5 of 4 heads), reset the controls after
    // the one that changed to their first option, one by one, as the live widget does.
    function resolve(changed) {
      if (isReachable(index)) { return; }
      var after = false;
      for (var i = 0; i < spec.controls.length; i++) {
        var c = spec.controls[i];
        if (c.name === changed) { after = true; continue; }
        if (after || changed === undefined) {
          index[c.name] = 0;
          if (isReachable(index)) { return; }
        }
      }
      spec.controls.forEach(function (c) { index[c.name] = Math.max(0, c.options.indexOf(c.value)); });
    }

    function pieces(slot) {
      return slot.parts.map(function (names, i) { return spec.values[slot.name][i][keyOf(index, names)]; });
    }

    function syncControls() {
      spec.controls.forEach(function (c) {
        var input = inputs[c.name];
        if (c.kind === "slider") {
          input.value = String(index[c.name]);
          input.setAttribute("aria-valuetext", c.label + " " + c.options[index[c.name]]);
          readouts[c.name].textContent = String(c.options[index[c.name]]);
        } else if (c.kind === "checkbox") {
          input.checked = Boolean(c.options[index[c.name]]);
        } else {
          // Offer only the options that have a state with the other controls as they are.
          Array.prototype.forEach.call(input.options, function (opt, i) {
            var probe = Object.assign({}, index);
            probe[c.name] = i;
            var ok = isReachable(probe);
            opt.disabled = !ok;
            opt.hidden = !ok;
          });
          input.value = String(index[c.name]);
        }
      });
    }

    function show(changed) {
      resolve(changed);
      syncControls();
      var news = [];
      spec.slots.forEach(function (s) {
        var values = pieces(s);
        if (s.type === "image") {
          var img = outputs[s.name];
          if (img.getAttribute("src") !== values[0].src) { img.src = values[0].src; img.parentNode.href = values[0].src; }
          img.alt = values[0].alt;
        } else if (s.type === "status") {
          var before = said[s.name] || [];
          values.forEach(function (v, i) { if (v !== before[i]) { news.push(v); } });
          said[s.name] = values;
        } else {
          outputs[s.name].innerHTML = values.join("");
        }
      });
      // Say what changed (a reader who moved a slider hears its effect); nothing on the first drawing.
      if (changed !== undefined && status) { status.textContent = news.join(" ").trim(); }
      root.dataset.state = fullKey(index);
      root.dataset.updated = String(performance.now());
    }

    function control(c) {
      var box = el("label", {"class": "mha-sw-control"});
      var id = "mha-sw-" + number + "-" + c.name;
      var input;
      if (c.kind === "slider") {
        box.appendChild(el("span", {"class": "mha-sw-label"}, c.label));
        input = el("input", {type: "range", min: "0", max: String(c.options.length - 1), step: "1", id: id,
                             "class": "mha-sw-slider"});
        box.appendChild(input);
        readouts[c.name] = el("span", {"class": "mha-sw-value", "aria-hidden": "true"});
        box.appendChild(readouts[c.name]);
        input.addEventListener("input", function () { index[c.name] = Number(input.value); show(c.name); });
      } else if (c.kind === "checkbox") {
        input = el("input", {type: "checkbox", id: id});
        box.appendChild(input);
        box.appendChild(el("span", {"class": "mha-sw-label"}, c.label));
        input.addEventListener("change", function () { index[c.name] = input.checked ? 1 : 0; show(c.name); });
      } else {
        box.appendChild(el("span", {"class": "mha-sw-label"}, c.label));
        input = el("select", {id: id});
        c.options.forEach(function (o, i) { input.appendChild(el("option", {value: String(i)}, String(o))); });
        box.appendChild(input);
        input.addEventListener("change", function () { index[c.name] = Number(input.value); show(c.name); });
      }
      input.setAttribute("data-control", c.name);
      inputs[c.name] = input;
      return box;
    }

    var body = el("div", {"class": "mha-sw-body"});
    var kinds = {};
    spec.controls.forEach(function (c) { kinds[c.name] = "control"; });
    spec.slots.forEach(function (s) { kinds[s.name] = s.type; });
    spec.rows.forEach(function (row) {
      var line = el("div", {"class": "mha-sw-row"});
      row.forEach(function (name) {
        if (kinds[name] === "control") {
          line.appendChild(control(byName[name]));
        } else if (kinds[name] === "image") {
          // A figure opens at full size in its own tab (pinch to zoom on a phone).
          var link = el("a", {"class": "mha-sw-zoom", target: "_blank"});
          outputs[name] = el("img", {"class": "mha-sw-figure mha-sw-" + name});
          link.appendChild(outputs[name]);
          line.appendChild(link);
        } else {
          outputs[name] = el("div", {"class": "mha-sw-html mha-sw-" + name});
          line.appendChild(outputs[name]);
        }
      });
      body.appendChild(line);
    });
    var status = el("p", {"class": "mha-sw-status mha-visually-hidden", role: "status", "aria-live": "polite"});
    body.appendChild(status);
    var foot = el("div", {"class": "mha-sw-row"});
    foot.appendChild(el("span", {"class": "mha-sw-badge"}, "works without Python: every state was drawn when the site was built"));
    if (spec.note) { foot.appendChild(el("span", {"class": "mha-sw-note"}, spec.note)); }
    body.appendChild(foot);

    var fallback = root.querySelector(".mha-sw-fallback");
    if (fallback) { fallback.remove(); }
    root.appendChild(body);
    show();

    // Fetch and decode every figure once the widget comes near the screen (or is touched), so that a move only
    // swaps an image the browser already holds; a reader who never scrolls there downloads only the first one.
    var held = [];
    function preload() {
      if (held.length) { return; }
      var seen = {};
      spec.slots.forEach(function (s) {
        if (s.type !== "image") { return; }
        Object.keys(spec.values[s.name][0]).forEach(function (key) {
          var url = spec.values[s.name][0][key].src;
          if (!seen[url]) {
            seen[url] = true;
            var img = new Image();
            img.src = url;
            var done = function () { root.dataset.decoded = String(Number(root.dataset.decoded || 0) + 1); };
            if (img.decode) { img.decode().then(done, done); } else { img.onload = img.onerror = done; }
            held.push(img);  // kept, so that the decoded image stays in memory
          }
        });
      });
      root.dataset.preloaded = String(held.length);
    }
    root.addEventListener("pointerdown", preload, {once: true});
    root.addEventListener("focusin", preload, {once: true});
    if ("IntersectionObserver" in window) {
      var watcher = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) { preload(); watcher.disconnect(); }
      }, {rootMargin: "800px"});
      watcher.observe(root);
    } else {
      preload();
    }
    root.dataset.ready = "true";
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll(".mha-static-widget"), setup);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

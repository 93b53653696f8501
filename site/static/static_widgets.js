/* Kernel-free widgets: every state was computed when the site was built (site/widget_export.py, driving
   the live widget), so moving a control only swaps saved outputs. No kernel, no request to another origin.

   Each <div class="mha-static-widget"> holds a <script type="application/json"> spec:
     controls: [{name, label, kind: "slider"|"select"|"checkbox", options, value, keys}]
     slots:    [{name, type: "html"|"image"}]          rows: [[control or slot names], ...]
     states:   {"heads=4|enlarge=0|causal=false": {slot name: HTML or image URL}}   initial: the first key
   A key joins "name=" + keys[i] of each control, in order; a combination the live widget cannot reach has no state.
   After each update the widget's dataset says what it shows: data-state (the key) and data-updated (a time stamp);
   data-preloaded counts the figures it fetches once it is near the screen, data-decoded those ready to show. */
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

    spec.controls.forEach(function (c) { index[c.name] = Math.max(0, c.options.indexOf(c.value)); });

    function keyOf(idx) {
      return spec.controls.map(function (c) { return c.name + "=" + c.keys[idx[c.name]]; }).join("|");
    }

    // The state for the current controls; if the live widget cannot be in it (enlarge head 5 of 4 heads), reset
    // the controls after the one that changed to their first option, one by one, as the live widget does.
    function resolve(changed) {
      if (spec.states[keyOf(index)]) { return keyOf(index); }
      var after = false;
      for (var i = 0; i < spec.controls.length; i++) {
        var c = spec.controls[i];
        if (c.name === changed) { after = true; continue; }
        if (after || changed === undefined) {
          index[c.name] = 0;
          if (spec.states[keyOf(index)]) { return keyOf(index); }
        }
      }
      return spec.initial;
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
            var ok = Boolean(spec.states[keyOf(probe)]);
            opt.disabled = !ok;
            opt.hidden = !ok;
          });
          input.value = String(index[c.name]);
        }
      });
    }

    function show(changed) {
      var key = resolve(changed);
      var state = spec.states[key];
      spec.controls.forEach(function (c) {  // resolve() may have reset controls: read them back from the key
        var part = key.split("|").filter(function (p) { return p.indexOf(c.name + "=") === 0; })[0];
        index[c.name] = c.keys.indexOf(part.slice(c.name.length + 1));
      });
      syncControls();
      spec.slots.forEach(function (s) {
        if (s.type === "image") {
          if (outputs[s.name].getAttribute("src") !== state[s.name]) { outputs[s.name].src = state[s.name]; }
        } else {
          outputs[s.name].innerHTML = state[s.name];
        }
      });
      root.dataset.state = key;
      root.dataset.updated = String(performance.now());
    }

    function control(c) {
      var box = el("label", {"class": "mha-sw-control"});
      var id = "mha-sw-" + number + "-" + c.name;
      var input;
      if (c.kind === "slider") {
        box.appendChild(el("span", {}, c.label));
        input = el("input", {type: "range", min: "0", max: String(c.options.length - 1), step: "1", id: id,
                             "class": "mha-sw-slider", "aria-label": c.label});
        box.appendChild(input);
        readouts[c.name] = el("span", {"class": "mha-sw-value", "aria-hidden": "true"});
        box.appendChild(readouts[c.name]);
        input.addEventListener("input", function () { index[c.name] = Number(input.value); show(c.name); });
      } else if (c.kind === "checkbox") {
        input = el("input", {type: "checkbox", id: id});
        box.appendChild(input);
        box.appendChild(el("span", {}, c.label));
        input.addEventListener("change", function () { index[c.name] = input.checked ? 1 : 0; show(c.name); });
      } else {
        box.appendChild(el("span", {}, c.label));
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
    var names = {};
    spec.controls.forEach(function (c) { names[c.name] = "control"; });
    spec.slots.forEach(function (s) { names[s.name] = s.type; });
    spec.rows.forEach(function (row) {
      var line = el("div", {"class": "mha-sw-row"});
      row.forEach(function (name) {
        if (names[name] === "control") {
          line.appendChild(control(spec.controls.filter(function (c) { return c.name === name; })[0]));
        } else if (names[name] === "image") {
          outputs[name] = el("img", {"class": "mha-sw-figure mha-sw-" + name, alt: "figure of the widget's state"});
          line.appendChild(outputs[name]);
        } else {
          outputs[name] = el("div", {"class": "mha-sw-html mha-sw-" + name});
          line.appendChild(outputs[name]);
        }
      });
      body.appendChild(line);
    });
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
      Object.keys(spec.states).forEach(function (key) {
        spec.slots.forEach(function (s) {
          var url = spec.states[key][s.name];
          if (s.type === "image" && !seen[url]) {
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

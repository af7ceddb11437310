/* leafscope explorer: shows what `leafscope explore` computed. No inference, no network.
 *
 * Data (loaded before this file by index.html):
 *   window.LEAFSCOPE.meta     num_classes, class_names, kind (grey|rgb|channels|vector), t, radius, ...
 *   window.LEAFSCOPE.points   the gallery: per point index, label, predicted, trace, rank, lambda1, image
 *   window.LEAFSCOPE.details  (filled by the detail files loaded after this one, through addDetails)
 *                             per data index: directions [{kind, order, eigenvalue, vgv, change, map|values,
 *                             frames, probs}], frames[s] the image at step t[s], probs[s] the model's
 *                             class probabilities on exactly that image.
 * Hooks for tests: data-testid = point (data-index), direction, current, step, probability
 * (data-class, data-value).
 */
(function () {
  "use strict";
  var L = window.LEAFSCOPE;
  var meta = L.meta;
  var points = L.points;
  var details = L.details;
  var names = meta.class_names;
  var T = meta.t.length;
  var center = Math.floor(T / 2);
  var SVG = "http://www.w3.org/2000/svg";
  var byIndex = {};
  points.forEach(function (p) { byIndex[p.index] = p; });
  var state = { index: null, direction: 0, step: center, keep: [] };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function png(b64) { return "data:image/png;base64," + b64; }
  function sci(x) { return x === null || x === undefined ? "n/a" : Number(x).toExponential(2); }
  function fix(x, d) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(d); }
  function correct(p) { return p.label < 0 ? null : p.label === p.predicted; }
  function className(c) { return names[c] === String(c) ? String(c) : c + " " + names[c]; }

  /* Bars of a vector: signed, around a zero line (vectors, their directions and walks). */
  function bars(values, cls, lo, hi) {
    var w = 160, h = 84, n = values.length;
    if (lo === undefined) { lo = Math.min(0, Math.min.apply(null, values)); }
    if (hi === undefined) { hi = Math.max(0, Math.max.apply(null, values)); }
    if (hi - lo < 1e-12) { hi = lo + 1; }
    var svg = svgEl("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", "class": cls || "" });
    var y0 = h - (0 - lo) / (hi - lo) * h, bw = w / n;
    svg.appendChild(svgEl("line", { x1: 0, x2: w, y1: y0, y2: y0, stroke: "#999", "stroke-width": 0.5 }));
    values.forEach(function (v, i) {
      var y = h - (v - lo) / (hi - lo) * h;
      svg.appendChild(svgEl("rect", {
        x: i * bw + bw * 0.1, width: Math.max(bw * 0.8, 0.5), y: Math.min(y, y0),
        height: Math.max(Math.abs(y - y0), 0.5), fill: v >= 0 ? "#c0392b" : "#2b6cb0"
      }));
    });
    return svg;
  }

  function thumbnail(p) {
    if (p.image) { return el("img", { src: png(p.image), alt: "point " + p.index }); }
    return bars(p.values || []);
  }

  /* ---- gallery ---- */
  function fillSelect(id, values, label) {
    var select = $(id);
    values.forEach(function (v) { select.appendChild(el("option", { value: String(v) }, label(v))); });
  }
  function setupControls() {
    var classes = names.map(function (_, c) { return c; });
    fillSelect("filter-predicted", classes, className);
    var labels = {};
    points.forEach(function (p) { if (p.label >= 0) labels[p.label] = true; });
    fillSelect("filter-label", Object.keys(labels).map(Number).sort(function (a, b) { return a - b; }),
      className);
    var ranks = {};
    points.forEach(function (p) { ranks[p.rank] = true; });
    fillSelect("filter-rank", Object.keys(ranks).map(Number).sort(function (a, b) { return a - b; }),
      String);
    ["sort", "order", "filter-predicted", "filter-label", "filter-correct", "filter-rank",
      "filter-trace-min", "filter-trace-max"].forEach(function (id) {
      $(id).addEventListener("input", renderGallery);
      $(id).addEventListener("change", renderGallery);
    });
  }
  function visiblePoints() {
    var pred = $("filter-predicted").value, lab = $("filter-label").value;
    var corr = $("filter-correct").value, rank = $("filter-rank").value;
    var tmin = parseFloat($("filter-trace-min").value), tmax = parseFloat($("filter-trace-max").value);
    var list = points.filter(function (p) {
      if (pred !== "" && p.predicted !== Number(pred)) return false;
      if (lab !== "" && p.label !== Number(lab)) return false;
      if (corr === "correct" && correct(p) !== true) return false;
      if (corr === "wrong" && correct(p) !== false) return false;
      if (rank !== "" && p.rank !== Number(rank)) return false;
      if (!isNaN(tmin) && !(p.log10_trace >= tmin)) return false;
      if (!isNaN(tmax) && !(p.log10_trace <= tmax)) return false;
      return true;
    });
    var key = $("sort").value, sign = $("order").value === "desc" ? -1 : 1;
    list.sort(function (a, b) {
      var d = (a[key] === null ? -Infinity : a[key]) - (b[key] === null ? -Infinity : b[key]);
      return d !== 0 ? sign * d : a.index - b.index;
    });
    return list;
  }
  function renderGallery() {
    var list = visiblePoints();
    var gallery = $("gallery");
    var frag = document.createDocumentFragment();
    list.forEach(function (p) {
      var ok = correct(p);
      var item = el("button", {
        type: "button", "class": "point" + (ok === false ? " wrong" : "") +
          (p.index === state.index ? " selected" : ""),
        "data-testid": "point", "data-index": String(p.index),
        title: "#" + p.index + ": label " + (p.label >= 0 ? names[p.label] : "none") + ", predicted " +
          names[p.predicted] + " (" + fix(p.max_probability, 3) + "), log10 trace " + fix(p.log10_trace, 2) +
          ", rank " + p.rank + ", lambda1 " + sci(p.lambda1)
      });
      item.appendChild(thumbnail(p));
      item.appendChild(el("span", { "class": "caption" },
        "#" + p.index + " \u2192 " + names[p.predicted]));
      item.addEventListener("click", function () { select(p.index); });
      frag.appendChild(item);
    });
    gallery.replaceChildren(frag);
    $("count").textContent = list.length + " of " + points.length + " points";
  }

  /* ---- the chosen point ---- */
  function spectrum(p) {
    var w = 280, h = 110, pad = 26, vals = p.log10_eigenvalues, n = vals.length;
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (hi - lo < 1e-9) { lo = hi - 1; }
    var svg = svgEl("svg", { viewBox: "0 0 " + w + " " + h, width: w, height: h, "data-testid": "spectrum" });
    var bw = (w - pad) / n;
    vals.forEach(function (v, i) {
      var bh = (v - lo) / (hi - lo) * (h - 24) + 2;
      var bar = svgEl("rect", { x: pad + i * bw + 1, width: bw - 2, y: h - 14 - bh, height: bh,
        fill: i < p.rank ? "#4a7bd0" : "#b8c0cc" });
      var tip = svgEl("title");
      tip.textContent = "\u03bb" + (i + 1) + " = " + sci(Math.pow(10, v));
      bar.appendChild(tip);
      svg.appendChild(bar);
      var label = svgEl("text", { x: pad + i * bw + bw / 2, y: h - 3, "text-anchor": "middle" });
      label.textContent = String(i + 1);
      svg.appendChild(label);
    });
    [[hi, 10], [lo, h - 16]].forEach(function (pair) {
      var t = svgEl("text", { x: 0, y: pair[1] });
      t.textContent = fix(pair[0], 1);
      svg.appendChild(t);
    });
    return svg;
  }

  function directionCard(d, i) {
    var name = d.kind === "leaf" ? "leaf " + d.order : "kernel " + d.order;
    var card = el("button", {
      type: "button", "class": "direction" + (i === state.direction ? " selected" : ""),
      "data-testid": "direction", "data-kind": d.kind, "data-order": String(d.order),
      title: d.kind === "leaf" ?
        "eigen-direction " + d.order + " of G: +v raises the predicted class" :
        "a random direction of ker G: what the model ignores (to first order)"
    });
    if (d.map) {
      card.appendChild(el("img", { src: png(d.map), alt: name }));
    } else {
      var lim = Math.max.apply(null, d.values.map(Math.abs)) || 1;
      card.appendChild(bars(d.values, "", -lim, lim));
    }
    card.appendChild(el("div", null, name));
    card.appendChild(el("div", null, d.kind === "leaf" ? "\u03bb = " + sci(d.eigenvalue) :
      "v\u1d40Gv = " + sci(d.vgv)));
    card.appendChild(el("div", null, "\u0394p \u2264 " + fix(d.change, 3)));
    card.addEventListener("click", function () {
      state.direction = i;
      document.querySelectorAll("#directions .direction").forEach(function (c, j) {
        c.classList.toggle("selected", j === i);
      });
      renderWalk();
    });
    return card;
  }

  function select(index) {
    var p = byIndex[index];
    if (!p) { return; }
    state.index = index;
    var detail = details[String(index)];
    if (!detail) {  // its detail file is still loading: addDetails shows it on arrival
      $("detail").replaceChildren(el("p", { id: "hint" }, "Loading point #" + index + "\u2026"));
      return;
    }
    state.direction = 0;
    state.step = center;
    // keep every frame of this point decoded, so moving the slider swaps images at once
    state.keep = [];
    detail.directions.forEach(function (d) {
      if (d.map) {
        d.frames.forEach(function (f) { var im = new Image(); im.src = png(f); state.keep.push(im); });
      }
    });
    document.querySelectorAll("#gallery .point").forEach(function (b) {
      b.classList.toggle("selected", b.getAttribute("data-index") === String(index));
    });
    try { history.replaceState(null, "", "#point=" + index); } catch (e) { /* file:// may refuse */ }

    var box = $("detail");
    var frag = document.createDocumentFragment();
    var ok = correct(p);
    frag.appendChild(el("h2", null, "Point #" + p.index));
    var facts = el("div", { "class": "facts" });
    var add = function (label, value, cls) {
      var span = el("span", cls ? { "class": cls } : null);
      span.appendChild(el("b", null, label + " "));
      span.appendChild(document.createTextNode(value));
      facts.appendChild(span);
    };
    add("label", p.label >= 0 ? className(p.label) : "none");
    add("predicted", className(p.predicted) + " (" + fix(p.max_probability, 3) + ")",
      ok === false ? "wrong-text" : null);
    add("trace", sci(p.trace));
    add("rank", String(p.rank));
    add("\u03bb1", sci(p.lambda1));
    frag.appendChild(facts);

    var row = el("div", { "class": "row" });
    var own = el("div");
    own.appendChild(el("div", { "class": "legend" }, "the point"));
    if (p.image) {
      own.appendChild(el("img", { "class": "pixels", src: png(p.image), alt: "the point", style: "height:112px" }));
    } else {
      own.appendChild(bars(p.values));
    }
    row.appendChild(own);
    var spec = el("div");
    spec.appendChild(el("div", { "class": "legend" },
      "log10 eigenvalues of G (blue: within the numerical rank)"));
    spec.appendChild(spectrum(p));
    row.appendChild(spec);
    frag.appendChild(row);

    frag.appendChild(el("h2", null, "Directions"));
    var legend = el("div", { "class": "legend" });
    if (meta.kind === "vector") {
      legend.textContent = "Each direction as bars (red: the coordinate grows along +v, blue: it shrinks). ";
    } else {
      legend.appendChild(el("span", { "class": "swatch", style: "background:#c0392b" }));
      legend.appendChild(document.createTextNode(" brighter along +v  "));
      legend.appendChild(el("span", { "class": "swatch", style: "background:#2b6cb0" }));
      legend.appendChild(document.createTextNode(" darker  (white: unchanged; " +
        (meta.kind === "rgb" ? "one panel per channel R, G, B; " : "") + "scaled to the largest |v|). "));
    }
    legend.appendChild(document.createTextNode(
      "Leaf directions are eigenvectors of G (+v raises the predicted class); kernel directions are " +
      "random directions G ignores. \u0394p: the largest total-variation change of the probabilities " +
      "along the walk."));
    frag.appendChild(legend);
    var dirs = el("div", { id: "directions" });
    detail.directions.forEach(function (d, i) { dirs.appendChild(directionCard(d, i)); });
    frag.appendChild(dirs);

    frag.appendChild(el("h2", null, "Walk"));
    var walk = el("div", { "class": "walk" });
    var left = el("div");
    var current;
    if (p.image) {
      current = el("img", { "class": "pixels", "data-testid": "current", alt: "the image at this step" });
    } else {
      current = el("div", { "data-testid": "current" });
    }
    left.appendChild(current);
    var stepper = el("div", { "class": "stepper" });
    var slider = el("input", {
      type: "range", min: "0", max: String(T - 1), step: "1", value: String(center),
      "data-testid": "step", "aria-label": "step along the direction"
    });
    slider.addEventListener("input", function () { state.step = Number(slider.value); renderWalk(); });
    slider.addEventListener("change", function () { state.step = Number(slider.value); renderWalk(); });
    stepper.appendChild(slider);
    stepper.appendChild(el("div", { "class": "t", id: "t-label" }));
    left.appendChild(stepper);
    walk.appendChild(left);
    var probs = el("div", { "class": "probabilities", id: "probabilities" });
    names.forEach(function (name, c) {
      var line = el("div", { "class": "probability", "data-testid": "probability", "data-class": String(c),
        "data-value": "0" });
      line.appendChild(el("span", { "class": "name" }, className(c)));
      var track = el("div", { "class": "track" });
      track.appendChild(el("div", { "class": "fill", style: "width:0%" }));
      line.appendChild(track);
      line.appendChild(el("span", { "class": "value" }, ""));
      probs.appendChild(line);
    });
    walk.appendChild(probs);
    frag.appendChild(walk);
    frag.appendChild(el("div", { "class": "legend" },
      "The image shown is the one the model scored: x + t\u00b7v kept in the data range and rounded " +
      "to 8 bits; the probabilities are the model's on it (computed by leafscope explore)."));
    box.replaceChildren(frag);
    renderWalk();
  }

  function renderWalk() {
    var detail = details[String(state.index)];
    if (!detail) { return; }
    var d = detail.directions[state.direction];
    var s = state.step;
    var current = document.querySelector('[data-testid="current"]');
    if (d.map) {
      current.setAttribute("src", png(d.frames[s]));
      current.setAttribute("data-step", String(s));
    } else {
      current.setAttribute("data-values", JSON.stringify(d.frames[s]));
      current.setAttribute("data-step", String(s));
      current.replaceChildren(bars(d.frames[s], "current"));
    }
    var t = meta.t[s];
    $("t-label").textContent = "t = " + (t > 0 ? "+" : "") + fix(t, 2) + " along " +
      (d.kind === "leaf" ? "leaf " : "kernel ") + d.order + " (L2 length in input units; \u00b1" +
      meta.radius + " at the ends)";
    var probs = d.probs[s];
    var top = 0;
    probs.forEach(function (v, c) { if (v > probs[top]) top = c; });
    document.querySelectorAll('#probabilities [data-testid="probability"]').forEach(function (line) {
      var c = Number(line.getAttribute("data-class"));
      var v = probs[c];
      line.setAttribute("data-value", String(v));
      line.classList.toggle("top", c === top);
      line.querySelector(".fill").style.width = (100 * v).toFixed(1) + "%";
      line.querySelector(".value").textContent = v.toFixed(4);
    });
  }

  function about() {
    var s = meta.summary || {};
    var p = meta.params || {};
    var text = meta.count + " points of " + meta.data + "; per point the top " + meta.directions_shown +
      " eigen-directions of G and " + (p.kernel_directions || 0) + " kernel direction(s), walked from \u2212" +
      meta.radius + " to +" + meta.radius + " in " + T + " steps.";
    if (s.accuracy !== null && s.accuracy !== undefined) { text += " Accuracy on these points " + fix(s.accuracy, 3) + "."; }
    if (s.median_leaf_change !== undefined) {
      text += " Median \u0394p along leaf 1: " + fix(s.median_leaf_change, 3) +
        (s.median_kernel_change !== null && s.median_kernel_change !== undefined ?
          ", along a kernel direction: " + fix(s.median_kernel_change, 3) : "") + ".";
    }
    $("about").textContent = text;
  }

  /* The detail files call this as they load (after the gallery is shown). */
  L.addDetails = function (chunk) {
    Object.keys(chunk).forEach(function (k) { details[k] = chunk[k]; });
    if (state.index !== null && chunk[String(state.index)] &&
        !document.querySelector('#detail [data-testid="current"]')) {
      select(state.index);
    }
  };

  meta.directions_shown = meta.params ? Math.min(meta.params.directions, meta.num_classes - 1) : "";
  about();
  setupControls();
  renderGallery();
  if (window.performance && performance.mark) { performance.mark("leafscope-gallery"); }
  var wanted = /#point=(-?\d+)/.exec(location.hash);
  var first = wanted && byIndex[Number(wanted[1])] ? Number(wanted[1]) : (visiblePoints()[0] || {}).index;
  if (first !== undefined) { select(first); }
})();

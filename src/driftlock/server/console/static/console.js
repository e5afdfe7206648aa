/* driftlock serve console: draws the plots with uPlot (static/uPlot.iife.min.js, MIT). Nothing else. */
(function () {
  "use strict";
  var holder = document.getElementById("plot-data");
  if (!holder || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(holder.textContent);
  var root = getComputedStyle(document.documentElement);
  function css(name, fallback) { return root.getPropertyValue(name).trim() || fallback; }
  var COLORS = {
    events: css("--plot-events", "#3b5bdb"),
    eventsFill: css("--plot-events-fill", "rgba(59, 91, 219, 0.55)"),
    score: css("--plot-score", "#495057"),
    anomaly: css("--plot-anomaly", "#e03131"),
    open: css("--band-open", "rgba(224, 49, 49, 0.14)"),
    openEdge: css("--band-open-edge", "rgba(224, 49, 49, 0.9)"),
    closed: css("--band-closed", "rgba(134, 142, 150, 0.16)"),
    closedEdge: css("--band-closed-edge", "rgba(134, 142, 150, 0.8)"),
    grid: css("--plot-grid", "rgba(0, 0, 0, 0.07)"),
    axis: css("--plot-axis", "#495057")
  };
  var plots = window.driftlockPlots = {};
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }
  var hhmm = uPlot.fmtDate("{HH}:{mm}"), mmdd = uPlot.fmtDate("{MM}-{DD}");
  var stamp = uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}");
  function timeTicks(u, splits) {
    var lastDay = null;
    return splits.map(function (ts) {
      var d = utc(ts), day = mmdd(d), label = hhmm(d);
      if (day !== lastDay) { lastDay = day; return label + "\n" + day; }
      return label;
    });
  }
  function timeValue(u, ts) { return ts == null ? "—" : stamp(utc(ts)); }

  /* Incidents as shaded bands behind the series, with a solid edge where each one opened. */
  function incidentBands(incidents) {
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height, drawn = 0;
          var min = u.scales.x.min, max = u.scales.x.max, edge = Math.max(2, Math.round(devicePixelRatio * 1.5));
          ctx.save();
          incidents.forEach(function (inc) {
            if (inc.end < min || inc.start > max) { return; }
            var x0 = Math.round(u.valToPos(Math.max(inc.start, min), "x", true));
            var x1 = Math.round(u.valToPos(Math.min(inc.end, max), "x", true));
            var open = inc.status === "open";
            ctx.fillStyle = open ? COLORS.open : COLORS.closed;
            ctx.fillRect(x0, top, Math.max(edge, x1 - x0), height);
            if (inc.start >= min) {
              ctx.fillStyle = open ? COLORS.openEdge : COLORS.closedEdge;
              ctx.fillRect(x0, top, edge, height);
            }
            drawn += 1;
          });
          ctx.restore();
          u.root.setAttribute("data-incidents-drawn", String(drawn));
        }]
      }
    };
  }

  function xScale(from, to) {
    return { time: true, auto: false, range: function () { return [from, to]; } };
  }

  function axes(yLabel, yValues) {
    var stroke = COLORS.axis, grid = { stroke: COLORS.grid, width: 1 };
    var y = { stroke: stroke, grid: grid, ticks: { show: false }, label: yLabel, labelSize: 20, size: 50 };
    if (yValues) { y.values = yValues; }
    return [{ stroke: stroke, grid: grid, ticks: { show: false }, values: timeTicks }, y];
  }

  function width(el) { return Math.max(240, el.clientWidth || el.parentNode.clientWidth || 600); }

  function timeline(d) {
    var eventsEl = document.getElementById("timeline-events");
    var scoreEl = document.getElementById("timeline-score");
    var sync = { key: "timeline" };
    var cursor = { sync: sync, drag: { x: false, y: false } };
    var bars = uPlot.paths.bars({ size: [0.85, 24], gap: 1 });
    var events = new uPlot({
      width: width(eventsEl), height: 190, tzDate: utc, cursor: cursor,
      scales: { x: xScale(d.from, d.to), y: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
      axes: axes("events / min"),
      series: [
        { label: "time (UTC)", value: timeValue },
        { label: "events / min", stroke: COLORS.events, fill: COLORS.eventsFill, width: 1, paths: bars, points: { show: false } }
      ],
      plugins: [incidentBands(d.incidents)]
    }, d.minutes, eventsEl);
    var score = new uPlot({
      width: width(scoreEl), height: 190, tzDate: utc, cursor: cursor,
      scales: { x: xScale(d.from, d.to), y: { auto: false, range: [0, 1] } },
      axes: axes("NCD", function (u, vals) { return vals.map(function (v) { return v.toFixed(1); }); }),
      series: [
        { label: "time (UTC)", value: timeValue },
        { label: "NCD", stroke: COLORS.score, width: 1, spanGaps: true, points: { show: true, size: 4, fill: COLORS.score },
          value: function (u, v) { return v == null ? "—" : v.toFixed(3); } },
        { label: "anomaly", stroke: COLORS.anomaly, width: 0, paths: function () { return null; },
          points: { show: true, size: 9, fill: COLORS.anomaly, stroke: COLORS.anomaly },
          value: function (u, v) { return v == null ? "—" : v.toFixed(3); } },
        { label: "p-value", show: false, scale: "p", value: function (u, v) { return v == null ? "—" : v.toPrecision(2); } }
      ],
      plugins: [incidentBands(d.incidents)]
    }, d.detections, scoreEl);
    plots.events = events;
    plots.score = score;
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        events.setSize({ width: width(eventsEl), height: 190 });
        score.setSize({ width: width(scoreEl), height: 190 });
      }).observe(eventsEl.parentNode);
    }
  }

  function sparks(list) {
    var cells = document.querySelectorAll("[data-plot=spark]");
    Array.prototype.forEach.call(cells, function (el) {
      var d = list[Number(el.getAttribute("data-key"))];
      if (!d) { return; }
      plots["spark" + el.getAttribute("data-key")] = new uPlot({
        width: 160, height: 34, tzDate: utc, legend: { show: false }, cursor: { show: false },
        scales: { x: xScale(d.from, d.to), y: { range: function (u, lo, hi) { return [0, Math.max(1, hi)]; } } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: COLORS.events, fill: COLORS.eventsFill, width: 1, paths: uPlot.paths.bars({ size: [0.9, 6] }), points: { show: false } }],
        plugins: [incidentBands(d.incidents)]
      }, d.minutes, el);
    });
  }

  if (Array.isArray(data)) { sparks(data); } else { timeline(data); }
  document.documentElement.setAttribute("data-plots-ready", "true");
})();

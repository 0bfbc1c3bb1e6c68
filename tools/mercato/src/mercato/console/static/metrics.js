// The metrics page: each panel's series from /api/metrics drawn with uPlot (vendored, MIT),
// redrawn every 5 s. Series are aligned on the union of their timestamps.
(function () {
  const root = document.getElementById("panels");
  const charts = {};
  const colors = ["#4ea1ff", "#d93025", "#188038", "#f29900", "#a142f4", "#12b5cb",
                  "#e52592", "#5f6368", "#b06000", "#1967d2"];
  function align(series) {
    const ts = Array.from(new Set(series.flatMap(s => s.points.map(p => p[0])))).sort((a, b) => a - b);
    const index = new Map(ts.map((t, i) => [t, i]));
    const data = [ts];
    for (const s of series) {
      const ys = new Array(ts.length).fill(null);
      for (const [t, v] of s.points) ys[index.get(t)] = Number.isFinite(v) ? v : null;
      data.push(ys);
    }
    return data;
  }
  function draw(panel) {
    let box = document.getElementById("panel-" + panel.id);
    if (!box) {
      box = document.createElement("section");
      box.id = "panel-" + panel.id;
      box.className = "panel";
      const h = document.createElement("h3");
      h.textContent = panel.title;
      box.appendChild(h);
      root.appendChild(box);
    }
    const key = panel.id + ":" + panel.series.map(s => s.name).join("|");
    if (charts[panel.id] && charts[panel.id].key !== key) {
      charts[panel.id].plot.destroy();
      delete charts[panel.id];
    }
    const data = align(panel.series);
    if (!charts[panel.id]) {
      const opts = {width: 440, height: 180, series: [{}].concat(panel.series.map((s, i) => ({
        label: s.name, stroke: colors[i % colors.length], width: 1.5, spanGaps: true}))),
        axes: [{}, {label: panel.unit, size: 60}], legend: {show: true}};
      charts[panel.id] = {key: key, plot: new uPlot(opts, data, box)};
    } else {
      charts[panel.id].plot.setData(data);
    }
    box.dataset.series = String(panel.series.length);
  }
  async function refresh() {
    try {
      const resp = await fetch("/api/metrics", {credentials: "same-origin"});
      const doc = await resp.json();
      const note = document.getElementById("metrics-note");
      if (!resp.ok) { note.textContent = doc.detail || "metrics unavailable"; return; }
      note.textContent = "last 15 minutes, refreshed every 5 s · updated " + new Date().toLocaleTimeString();
      doc.panels.forEach(draw);
    } catch (e) {
      // Shown, not swallowed: a silent failure here once left "loading…" up for good.
      document.getElementById("metrics-note").textContent =
        "metrics unavailable (" + e.message + "); retrying every 5 s";
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();

// forgekit diversity report: linked Vega-Lite charts (anywidget ESM).
//
// No imports on purpose: forgekit.jupyter.widgets.report bundles this file with Vega,
// Vega-Lite and Vega-Embed through vl-convert,
// so the browser fetches nothing from the network.
// `vegaEmbed` below comes from that bundle.
//
// Each chart has two layers over the plotted records: all of them (named data `records`)
// and, on top, `selected`: the records passing the other charts' selections (the map also
// its own brush), recomputed here whenever a selection changes. The selections go to Python
// as `selection` ({param: entries}, the rules of forgekit.evaluate.report_charts.select_rows).
// If a chart cannot be drawn, one line says why and Python sends a static image instead.

const RANGE_ENDS = { len_bin_start: "len_bin_end" };

function test(row, field, kind, value) {
  const v = row[field];
  if (!kind.startsWith("R")) return value === null ? v === null || v === undefined : v === value;
  const lo = Math.min(value[0], value[1]);
  const hi = Math.max(value[0], value[1]);
  const end = RANGE_ENDS[field];
  if (end) return v <= hi && row[end] > lo;
  return v >= lo && v <= hi;
}

function selectRows(records, selection, skipParam) {
  const active = Object.entries(selection).filter(([p, entries]) => p !== skipParam && entries.length);
  if (!active.length) return records;
  return records.filter((row) =>
    active.every(([, entries]) => entries.some((entry) => entry.every(([f, k, v]) => test(row, f, k, v)))),
  );
}

// A param's Vega store as entries: [[field, kind, value], ...] per selected tuple.
function entriesOf(view, param) {
  let store = [];
  try {
    store = view.data(`${param}_store`) || [];
  } catch (err) {
    return [];
  }
  return store.map((tuple) => tuple.fields.map((f, i) => [f.field, f.type, tuple.values[i]]));
}

// Resolves once the node is in the page with a width: charts sized to their container
// measure it when they are embedded (anywidget may render before the output is attached).
function whenSized(node) {
  return new Promise((resolve) => {
    if (node.isConnected && node.clientWidth > 0) return resolve();
    const observer = new ResizeObserver(() => {
      if (node.isConnected && node.clientWidth > 0) {
        observer.disconnect();
        resolve();
      }
    });
    observer.observe(node);
  });
}

function copies(rows) {
  return rows.map((row) => ({ ...row }));
}

function render({ model, el }) {
  el.classList.add("forgekit-report-charts");
  el.dataset.forgekit = "report";
  el.dataset.selected = String(model.get("records").length);
  const status = document.createElement("div");
  status.className = "fk-rp-status";
  const grid = document.createElement("div");
  grid.className = "fk-rp-grid";
  el.append(status, grid);

  const records = model.get("records");
  const charts = model.get("charts");
  const views = {};
  const selection = {};
  let alive = true;
  let publishTimer = null;
  let frame = null;

  function redraw() {
    frame = null;
    for (const chart of charts) {
      const view = views[chart.name];
      if (!view) continue;
      const rows = selectRows(records, selection, chart.filter_self ? null : chart.param);
      view.data("selected", copies(rows)); // replaces the dataset
      view.runAsync();
    }
  }

  function publish() {
    clearTimeout(publishTimer);
    el.dataset.pending = "true"; // a selection change not yet sent to Python
    publishTimer = setTimeout(() => {
      if (!alive) return;
      delete el.dataset.pending;
      const count = selectRows(records, selection, null).length;
      el.dataset.selected = String(count);
      model.set("selection", structuredClone(selection));
      model.set("selected_count", count);
      model.save_changes();
    }, 120);
  }

  function showFallback() {
    const src = model.get("fallback");
    if (!src) return;
    const img = document.createElement("img");
    img.className = "fk-rp-fallback";
    img.alt = "diversity report charts (static)";
    img.src = src;
    grid.replaceChildren(img);
  }

  function fail(err) {
    const reason = (err && err.message) || String(err);
    console.error("[forgekit report]", err);
    el.dataset.failed = "true";
    status.textContent = `Interactive charts unavailable (${reason.split("\n")[0]}); showing a static image.`;
    status.classList.add("fk-rp-error");
    grid.replaceChildren();
    if (model.get("fallback")) showFallback();
    else {
      model.set("render_error", reason.slice(0, 500));
      model.save_changes();
    }
  }
  model.on("change:fallback", showFallback);

  const boxes = charts.map((chart) => {
    const box = document.createElement("div");
    box.className = `fk-rp-chart fk-rp-${chart.name}`;
    box.dataset.chart = chart.name;
    grid.append(box);
    return box;
  });

  // Vega-Embed re-measures "container" widths on a window resize; the output area also
  // changes width when a side panel opens or the notebook is resized.
  let lastWidth = 0;
  const resizer = new ResizeObserver(() => {
    if (grid.clientWidth && grid.clientWidth !== lastWidth) {
      lastWidth = grid.clientWidth;
      window.dispatchEvent(new Event("resize"));
    }
  });

  (async () => {
    try {
      await whenSized(grid);
      lastWidth = grid.clientWidth;
      resizer.observe(grid);
      for (const [i, chart] of charts.entries()) {
        const spec = structuredClone(chart.spec);
        spec.datasets = { ...(spec.datasets || {}), records: copies(records), selected: copies(records) };
        const result = await vegaEmbed(boxes[i], spec, {
          mode: "vega-lite",
          renderer: "svg",
          actions: { export: true, source: false, compiled: false, editor: false },
        });
        if (!alive) {
          result.finalize();
          return;
        }
        views[chart.name] = result.view;
        result.view.addSignalListener(chart.param, () => {
          selection[chart.param] = entriesOf(result.view, chart.param);
          if (frame === null) frame = requestAnimationFrame(redraw);
          publish();
        });
      }
      el.dataset.rendered = "true";
      model.set("rendered", true);
      model.save_changes();
    } catch (err) {
      fail(err);
    }
  })();

  return () => {
    alive = false;
    resizer.disconnect();
    model.off("change:fallback", showFallback);
    for (const view of Object.values(views)) view.finalize();
  };
}

export default { render };

// forgekit RunMonitor: live view of an engine run (anywidget ESM, no build step).
// The Python side pushes counters, the latest records and errors; the Cancel button sets
// `cancel_requested`, which the kernel sees while the run is still going.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtInt(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function fmtTime(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

const FINISHED = new Set(["completed", "cancelled", "stopped", "failed", "interrupted"]);

function render({ model, el: root }) {
  root.classList.add("forgekit-run-monitor");
  root.dataset.forgekit = "run-monitor";

  const head = el("div", "fk-rm-head");
  const title = el("span", "fk-rm-title");
  const status = el("span", "fk-rm-status");
  const cancel = el("button", "fk-rm-cancel", "Cancel");
  cancel.type = "button";
  cancel.title = "Stop the run; finished records are kept";
  head.append(title, status, cancel);

  const barOuter = el("div", "fk-rm-bar");
  const barInner = el("div", "fk-rm-bar-fill");
  barOuter.append(barInner);
  const progressText = el("div", "fk-rm-progress");

  const stats = el("div", "fk-rm-stats");
  const cells = {};
  for (const [key, label] of [
    ["records", "records"],
    ["rate", "requests/s"],
    ["requests", "requests"],
    ["tokens", "tokens"],
    ["cost", "cost"],
    ["retried", "retries"],
    ["failed", "errors"],
    ["filtered", "filtered"],
    ["concurrency", "in flight (adaptive)"],
  ]) {
    const cell = el("div", "fk-rm-stat");
    const value = el("div", "fk-rm-value");
    value.dataset.stat = key;
    cell.append(value, el("div", "fk-rm-label", label));
    stats.append(cell);
    cells[key] = value;
  }

  const reason = el("div", "fk-rm-reason");
  const batchLine = el("div", "fk-rm-batch");
  const latestBox = el("div", "fk-rm-latest");
  const errorBox = el("div", "fk-rm-errors");
  root.append(head, barOuter, progressText, stats, batchLine, reason, latestBox, errorBox);

  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    model.set("cancel_requested", true);
    model.save_changes();
  });

  function update() {
    const st = model.get("status");
    const total = model.get("total");
    const done = model.get("done");
    root.dataset.status = st;
    root.dataset.done = String(done);
    title.textContent = model.get("title");
    status.textContent = st;
    status.className = `fk-rm-status fk-rm-${st}`;

    const finished = FINISHED.has(st);
    cancel.hidden = finished;
    if (model.get("cancel_requested") && !finished) {
      cancel.disabled = true;
      cancel.textContent = "Cancelling…";
    }
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : finished ? 100 : 0;
    barInner.style.width = `${pct}%`;
    barOuter.classList.toggle("fk-rm-indeterminate", total === 0 && !finished);
    const elapsed = model.get("elapsed");
    let text = total > 0 ? `${fmtInt(done)} / ${fmtInt(total)} records` : `${fmtInt(done)} records`;
    text += ` · ${fmtTime(elapsed)}`;
    if (!finished && total > 0 && done > 0 && done < total) {
      text += ` · ~${fmtTime((elapsed / done) * (total - done))} left`;
    }
    if (model.get("skipped")) text += ` · ${fmtInt(model.get("skipped"))} resumed`;
    if (model.get("out")) text += ` · ${model.get("out")}`;
    progressText.textContent = text;

    cells.records.textContent = fmtInt(model.get("ok"));
    cells.rate.textContent = Number(model.get("requests_per_s") || 0).toFixed(2);
    cells.requests.textContent = `${fmtInt(model.get("requests"))}${model.get("cached") ? ` (+${fmtInt(model.get("cached"))} cached)` : ""}`;
    cells.tokens.textContent = fmtInt(model.get("tokens"));
    cells.cost.textContent = `$${Number(model.get("cost") || 0).toFixed(4)}`;
    cells.retried.textContent = fmtInt(model.get("retried"));
    cells.failed.textContent = fmtInt(model.get("failed"));
    cells.filtered.textContent = fmtInt(model.get("filtered"));
    cells.failed.parentElement.classList.toggle("fk-rm-bad", model.get("failed") > 0);
    // Adaptive concurrency ("limit / ceiling"): hidden when the run does not adapt.
    const ceiling = model.get("concurrency_ceiling");
    cells.concurrency.parentElement.hidden = !ceiling;
    if (ceiling) {
      const lowered = model.get("concurrency_decreases");
      cells.concurrency.textContent = `${model.get("concurrency")} / ${ceiling}`;
      cells.concurrency.title = `lowered ${lowered} time(s) after 429s, timeouts or rising latency`;
    }

    // Batch mode: provider batches by state (validating, in_progress, finalizing, ...).
    const batch = model.get("batch") || {};
    const states = Object.entries(batch.by_status || {}).map(([s, n]) => `${n} ${s}`);
    batchLine.textContent = batch.batches
      ? `batches: ${states.join(", ")} · ${fmtInt(batch.completed)} / ${fmtInt(batch.total)} requests answered` +
        (batch.failed ? ` · ${fmtInt(batch.failed)} failed` : "")
      : "";
    batchLine.hidden = !batch.batches;

    reason.textContent = model.get("stop_reason") || "";
    reason.hidden = !model.get("stop_reason");

    latestBox.replaceChildren();
    const latest = model.get("latest") || [];
    if (latest.length) {
      latestBox.append(el("div", "fk-rm-section", "Latest records"));
      for (const rec of latest) {
        const row = el("div", "fk-rm-record");
        row.dataset.recordId = rec.id;
        row.append(el("div", "fk-rm-in", rec.input), el("div", "fk-rm-out", rec.output));
        latestBox.append(row);
      }
    }
    errorBox.replaceChildren();
    const errors = model.get("errors") || [];
    if (errors.length) {
      errorBox.append(el("div", "fk-rm-section", "Errors and retries"));
      for (const err of errors) {
        const row = el("div", "fk-rm-error");
        row.append(el("b", "", err.error), document.createTextNode(` ${err.message}`));
        if (err.id) row.title = err.id;
        errorBox.append(row);
      }
    }
  }

  model.on("change", update);
  update();
  // Tell the kernel a front end is drawing this widget (it then skips the text progress).
  if (!model.get("rendered")) {
    model.set("rendered", true);
    model.save_changes();
  }
  return () => model.off("change", update);
}

export default { render };

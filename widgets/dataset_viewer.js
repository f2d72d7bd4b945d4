// forgekit DatasetViewer: paged, searchable table + detail pane (anywidget ESM).
// Paging, search and sorting run in Python (only one page is sent); the detail pane shows
// the full selected record: history, chosen/rejected side by side, lineage. A click on a
// column header sorts by it (again: descending; a third time: data order).

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function asText(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function field(label, value, className) {
  const box = el("div", `fk-dv-field ${className || ""}`);
  box.append(el("div", "fk-dv-label", label), el("pre", "fk-dv-text", asText(value)));
  return box;
}

const SHOWN = new Set(["id", "system", "input", "output", "history", "chosen", "rejected", "lineage", "metadata"]);

function renderDetail(pane, record) {
  pane.replaceChildren();
  if (!record || !Object.keys(record).length) {
    pane.append(el("div", "fk-dv-hint", "Click a row to see the whole record."));
    return;
  }
  pane.append(el("div", "fk-dv-detail-id", record.id ? `id ${record.id}` : "record"));
  if (record.system) pane.append(field("system", record.system));
  const history = record.history || [];
  if (history.length) {
    const box = el("div", "fk-dv-history");
    box.append(el("div", "fk-dv-label", `history (${history.length} turns)`));
    history.forEach((turn, i) => {
      const [user, assistant] = Array.isArray(turn) ? turn : [turn.user ?? turn, turn.assistant ?? ""];
      box.append(el("pre", "fk-dv-turn fk-dv-user", `${i + 1}. user: ${asText(user)}`));
      box.append(el("pre", "fk-dv-turn fk-dv-assistant", `${i + 1}. assistant: ${asText(assistant)}`));
    });
    pane.append(box);
  }
  if (record.input !== undefined) pane.append(field("input", record.input));
  if (record.output !== undefined) pane.append(field("output", record.output));
  if (record.chosen !== undefined || record.rejected !== undefined) {
    const pair = el("div", "fk-dv-pair");
    pair.append(field("chosen", record.chosen, "fk-dv-chosen"), field("rejected", record.rejected, "fk-dv-rejected"));
    pane.append(pair);
  }
  for (const [key, value] of Object.entries(record)) {
    if (!SHOWN.has(key)) pane.append(field(key, value));
  }
  if (record.metadata !== undefined) pane.append(field("metadata", record.metadata));
  if (record.lineage !== undefined) pane.append(field("lineage", record.lineage, "fk-dv-lineage"));
}

function render({ model, el: root }) {
  root.classList.add("forgekit-dataset-viewer");
  root.dataset.forgekit = "dataset-viewer";

  const head = el("div", "fk-dv-head");
  const title = el("span", "fk-dv-title");
  const search = el("input", "fk-dv-search");
  search.type = "search";
  search.placeholder = "Search records…";
  search.value = model.get("query");
  head.append(title, search);

  const body = el("div", "fk-dv-body");
  const tableBox = el("div", "fk-dv-table-box");
  const table = el("table", "fk-dv-table");
  const thead = el("thead");
  const tbody = el("tbody");
  table.append(thead, tbody);
  const pager = el("div", "fk-dv-pager");
  const prev = el("button", "fk-dv-prev", "‹ Prev");
  const next = el("button", "fk-dv-next", "Next ›");
  const pageInfo = el("span", "fk-dv-page-info");
  pager.append(prev, pageInfo, next);
  tableBox.append(table, pager);
  const detail = el("div", "fk-dv-detail");
  body.append(tableBox, detail);
  root.append(head, body);

  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      model.set("query", search.value);
      model.save_changes();
    }, 250);
  });
  function goTo(page) {
    model.set("page", page);
    model.save_changes();
  }
  prev.addEventListener("click", () => goTo(model.get("page") - 1));
  next.addEventListener("click", () => goTo(model.get("page") + 1));

  function update() {
    const columns = model.get("columns");
    const rows = model.get("rows");
    const matches = model.get("matches");
    const count = model.get("count");
    const page = model.get("page");
    const pages = Math.max(1, Math.ceil(matches / model.get("page_size")));
    root.dataset.count = String(count);
    root.dataset.matches = String(matches);
    root.dataset.subset = String(model.get("subset"));
    title.textContent = model.get("title") || `${count} records`;

    thead.replaceChildren();
    const hr = el("tr");
    const sortBy = model.get("sort_by");
    const descending = model.get("descending");
    for (const c of columns) {
      const arrow = c === sortBy ? (descending ? " ▼" : " ▲") : "";
      const th = el("th", "fk-dv-sortable", c + arrow);
      th.title = "Sort by " + c;
      th.addEventListener("click", () => {
        if (c !== sortBy) {
          model.set("sort_by", c);
          model.set("descending", false);
        } else if (!descending) {
          model.set("descending", true);
        } else {
          model.set("sort_by", "");
          model.set("descending", false);
        }
        model.save_changes();
      });
      hr.append(th);
    }
    thead.append(hr);
    tbody.replaceChildren();
    const selected = model.get("selected");
    for (const row of rows) {
      const tr = el("tr", "fk-dv-row");
      tr.dataset.index = String(row.index);
      if (row.index === selected) tr.classList.add("fk-dv-selected");
      for (const c of columns) {
        const td = el("td", "", row[c] ?? "");
        td.title = td.textContent; // a cut-off cell in full on hover
        tr.append(td);
      }
      tr.addEventListener("click", () => {
        model.set("selected", row.index);
        model.save_changes();
      });
      tbody.append(tr);
    }
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "fk-dv-empty", count ? "No record matches the search." : "No records.");
      td.colSpan = Math.max(1, columns.length);
      tr.append(td);
      tbody.append(tr);
    }
    const subset = model.get("subset");
    const scope = subset < count ? `${matches} of ${subset} selected (${count} in all)` : `${matches} of ${count} records`;
    pageInfo.textContent = `page ${page + 1} of ${pages} · ${scope}`;
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    renderDetail(detail, model.get("detail"));
  }

  model.on("change", update);
  update();
  return () => model.off("change", update);
}

export default { render };

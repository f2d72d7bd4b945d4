// forgekit PairReviewer: step through DPO pairs, accept / swap / reject each (anywidget ESM).
// A decision updates the synced `decisions` dict; Python appends it to the review file.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

const LABELS = { accept: "Accept", swap: "Swap", reject: "Reject" };

function render({ model, el: root }) {
  root.classList.add("forgekit-pair-reviewer");
  root.dataset.forgekit = "pair-reviewer";
  root.tabIndex = 0;

  const head = el("div", "fk-pr-head");
  const position = el("span", "fk-pr-position");
  const progress = el("span", "fk-pr-progress");
  const badge = el("span", "fk-pr-badge");
  head.append(position, badge, progress);
  const prompt = el("div", "fk-pr-prompt");
  const sides = el("div", "fk-pr-sides");
  const chosen = el("div", "fk-pr-side fk-pr-chosen");
  const rejected = el("div", "fk-pr-side fk-pr-rejected");
  sides.append(chosen, rejected);
  const buttons = el("div", "fk-pr-buttons");
  const prev = el("button", "fk-pr-prev", "‹ Prev");
  const next = el("button", "fk-pr-next", "Next ›");
  const actions = {};
  buttons.append(prev);
  for (const d of ["accept", "swap", "reject"]) {
    const b = el("button", `fk-pr-${d}`, LABELS[d]);
    b.title = `${LABELS[d]} (key ${d[0]})`;
    b.addEventListener("click", () => decide(d));
    actions[d] = b;
    buttons.append(b);
  }
  buttons.append(next);
  const path = el("div", "fk-pr-path");
  root.append(head, prompt, sides, buttons, path);

  function goTo(i) {
    model.set("index", Math.max(0, Math.min(model.get("total") - 1, i)));
    model.save_changes();
  }
  function decide(decision) {
    const pair = model.get("pair");
    model.set("decisions", { ...model.get("decisions"), [pair.id]: decision });
    const i = model.get("index");
    if (i < model.get("total") - 1) model.set("index", i + 1);
    model.save_changes();
  }
  prev.addEventListener("click", () => goTo(model.get("index") - 1));
  next.addEventListener("click", () => goTo(model.get("index") + 1));
  root.addEventListener("keydown", (event) => {
    const key = { a: "accept", s: "swap", r: "reject" }[event.key];
    if (key) decide(key);
    else if (event.key === "ArrowLeft") goTo(model.get("index") - 1);
    else if (event.key === "ArrowRight") goTo(model.get("index") + 1);
  });

  function side(box, label, text) {
    box.replaceChildren(el("div", "fk-pr-label", label), el("pre", "fk-pr-text", text));
  }

  function update() {
    const pair = model.get("pair") || {};
    const total = model.get("total");
    const decisions = model.get("decisions") || {};
    const done = Object.keys(decisions).length;
    root.dataset.index = String(model.get("index"));
    root.dataset.decision = pair.decision || "";
    position.textContent = `pair ${model.get("index") + 1} of ${total}`;
    progress.textContent = `${done} reviewed`;
    badge.textContent = pair.decision ? { accept: "accepted", swap: "swapped", reject: "rejected" }[pair.decision] : "undecided";
    badge.className = `fk-pr-badge fk-pr-badge-${pair.decision || "none"}`;
    prompt.replaceChildren();
    if (pair.system) prompt.append(el("div", "fk-pr-system", pair.system));
    for (const [user, assistant] of pair.history || []) {
      prompt.append(el("div", "fk-pr-turn", `user: ${user}`), el("div", "fk-pr-turn", `assistant: ${assistant}`));
    }
    prompt.append(el("div", "fk-pr-input", pair.input || ""));
    side(chosen, "chosen", pair.chosen || "");
    side(rejected, "rejected", pair.rejected || "");
    for (const [d, b] of Object.entries(actions)) b.classList.toggle("fk-pr-active", pair.decision === d);
    prev.disabled = model.get("index") <= 0;
    next.disabled = model.get("index") >= total - 1;
    path.textContent = `decisions: ${model.get("path")}`;
  }

  model.on("change", update);
  update();
  return () => model.off("change", update);
}

export default { render };

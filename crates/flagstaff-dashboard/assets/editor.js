// Flagstaff dashboard: the targeting and segment editors and the review-before-save dialog.
//
// The page embeds what it shows as JSON (#editor-data). The editor works on a copy of the
// stored document and only touches the parts it manages, so fields it does not show (tracking
// flags, the salt) are saved back unchanged. Targets and segment lists are edited for every
// context kind: user keys in `targets` / `included` / `excluded`, other kinds beside them. Saving always
// goes through review: the server describes the change in words and diffs it against what is
// stored now, the person adds an optional comment (and types the flag key in a critical
// environment), then the save is sent with the version the page read. A 409 means someone else
// saved meanwhile; the dialog then offers to review again against their version.
"use strict";

(() => {
  const dataElement = document.getElementById("editor-data");
  if (!dataElement) return;
  const data = JSON.parse(dataElement.textContent || "{}");
  const clone = (v) => JSON.parse(JSON.stringify(v));

  // ----- tiny DOM helper ------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "value") el.value = v;
      else if (k === "checked") el.checked = !!v;
      else if (k === "selected") el.selected = !!v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const option = (value, label, selected) => h("option", { value, selected }, label);

  // ----- review dialog --------------------------------------------------------------------
  const dialog = document.getElementById("review");
  const $ = (id) => document.getElementById(id);

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": Flagstaff.csrf() },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    let json = {};
    try { json = await response.json(); } catch (_) { /* empty body */ }
    return { status: response.status, ok: response.ok, json };
  }

  function errorText(json) {
    const field = json.field ? ` (at ${json.field})` : "";
    return `${json.message || "The server refused the change."}${field}`;
  }

  // Opens the dialog for `proposal`: { kind: "targeting" | "segment", value, version, where }.
  Flagstaff.review = async function review(proposal) {
    if (!dialog) return;
    const error = $("review-error");
    const save = $("review-save");
    const confirmBox = $("review-critical");
    const confirmInput = $("review-confirm");
    const confirmKey = data.flagKey || data.segmentKey || "";
    let version = proposal.version;

    const showError = (message) => { error.textContent = message; error.hidden = false; };
    const reset = () => {
      error.hidden = true;
      $("review-reload").hidden = true;
      $("review-rebase").hidden = true;
      save.hidden = false;
    };

    async function load() {
      reset();
      const r = await post(data.reviewUrl, { environment: data.environment, [proposal.kind]: proposal.value });
      if (!r.ok) {
        $("review-diff").textContent = "";
        showError(errorText(r.json));
        save.hidden = true;
        return false;
      }
      $("review-diff").innerHTML = r.json.html; // rendered and escaped by the server
      if (!r.json.changed) {
        showError("Nothing to save: this is what is stored already.");
        save.hidden = true;
      }
      if (proposal.rebased) version = r.json.version;
      return true;
    }

    $("review-where").textContent = proposal.where;
    $("review-comment").value = proposal.comment || "";
    confirmInput.value = "";
    confirmBox.hidden = !data.critical;
    $("review-confirm-key").textContent = confirmKey;
    const syncConfirm = () => { save.disabled = data.critical && confirmInput.value.trim() !== confirmKey; };
    confirmInput.oninput = syncConfirm;
    syncConfirm();
    // Enter confirms once the key is typed (and does nothing before): in an emergency the
    // keyboard must never close the dialog without saving. Escape cancels (the dialog's own).
    const confirmByEnter = (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      if (!save.hidden && !save.disabled) save.click();
    };
    confirmInput.onkeydown = confirmByEnter;
    $("review-reviewers").onkeydown = confirmByEnter;
    $("review-form").onsubmit = (event) => event.preventDefault();

    // Where approval is required, the same proposal becomes a change request.
    const requesting = Boolean(data.requestUrl);
    // The button says what it does ("Turn off in Production"), not just "Save".
    save.textContent = requesting ? "Request approval" : (proposal.action || "Save changes");
    $("review-reviewers-label").hidden = !requesting;
    $("review-cancel").onclick = () => dialog.close();
    $("review-reload").onclick = () => window.location.reload();
    $("review-rebase").onclick = async () => { proposal.rebased = true; await load(); syncConfirm(); };
    save.onclick = async () => {
      save.disabled = true;
      Flagstaff.saving = true;
      const r = await post(requesting ? data.requestUrl : data.saveUrl, {
        environment: data.environment,
        [proposal.kind]: proposal.value,
        version,
        comment: $("review-comment").value,
        reviewers: requesting ? $("review-reviewers").value.split(",").map((r) => r.trim()).filter(Boolean) : [],
      });
      if (r.ok) {
        Flagstaff.dirtyChecks.length = 0;
        if (requesting && r.json.url) window.location.assign(r.json.url);
        else window.location.reload();
        return;
      }
      Flagstaff.saving = false;
      save.disabled = false;
      if (r.status === 409) {
        showError("Someone else saved a change while you were editing, so yours was not saved. " +
          "Review again to see what your save would change compared with their version.");
        save.hidden = true;
        $("review-reload").hidden = false;
        $("review-rebase").hidden = false;
      } else {
        showError(errorText(r.json));
      }
    };

    await load();
    if (!dialog.open) dialog.showModal();
    (data.critical ? confirmInput : $("review-comment")).focus();
  };

  // ----- clauses --------------------------------------------------------------------------
  const OPERATORS = {
    text: [["in", "is one of"], ["startsWith", "starts with"], ["endsWith", "ends with"], ["contains", "contains"], ["matches", "matches regex"]],
    number: [["in", "is one of"], ["lessThan", "<"], ["lessThanOrEqual", "≤"], ["greaterThan", ">"], ["greaterThanOrEqual", "≥"]],
    date: [["before", "is before"], ["after", "is after"]],
    version: [["semVerEqual", "is version"], ["semVerLessThan", "is before version"], ["semVerGreaterThan", "is after version"]],
    segment: [["segmentMatch", "is in segment"]],
  };
  // Attributes whose type is known, so only fitting operators are offered.
  const ATTRIBUTE_TYPES = {
    key: "text", name: "text", email: "text", country: "text", plan: "text", ip: "text",
    firstName: "text", lastName: "text", avatar: "text", anonymous: "text",
    age: "number", seats: "number", createdAt: "date", signupDate: "date",
    version: "version", appVersion: "version", osVersion: "version",
  };
  const typeOfOp = (op) => Object.keys(OPERATORS).find((t) => OPERATORS[t].some(([o]) => o === op)) || "text";
  const numericOps = new Set(["lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"]);

  function parseValues(op, text) {
    const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
    return parts.map((p) => {
      if (numericOps.has(op) && p !== "" && !Number.isNaN(Number(p))) return Number(p);
      if ((op === "before" || op === "after") && /^-?\d+(\.\d+)?$/.test(p)) return Number(p);
      return p;
    });
  }
  const showValues = (values) => (values || []).map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", ");

  // A `matches` pattern that does not compile is said where it is typed, not only at review.
  // The browser's regex syntax is close to the server's (Rust's `regex`); the server still
  // checks every pattern when the change is reviewed and saved.
  function checkPatterns(input, clause) {
    const note = input.closest(".clause")?.querySelector(".field-error");
    let problem = "";
    if (clause.op === "matches") {
      for (const value of clause.values || []) {
        try { new RegExp(String(value), "u"); } catch (err) {
          problem = `“${String(value).slice(0, 40)}” is not a regular expression: ${String(err.message).replace(/^Invalid regular expression: /, "").slice(0, 80)}`;
          break;
        }
      }
    }
    if (problem) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    if (note) { note.textContent = problem; note.hidden = !problem; }
  }

  function clauseEditor(clause, onChange, onRemove) {
    const row = h("div", { class: "ed-row clause" });
    const render = () => {
      row.replaceChildren();
      const isSegment = clause.op === "segmentMatch";
      const type = ATTRIBUTE_TYPES[clause.attribute];
      const groups = isSegment ? ["segment"] : (type ? [type] : ["text", "number", "date", "version"]);
      const opSelect = h("select", {
        "aria-label": "Operator",
        onchange: (e) => {
          const was = clause.op === "segmentMatch";
          clause.op = e.target.value;
          if (clause.op === "segmentMatch") { clause.attribute = ""; delete clause.contextKind; clause.values = []; }
          else if (was) { clause.attribute = "key"; clause.contextKind = "user"; clause.values = []; }
          else clause.values = parseValues(clause.op, showValues(clause.values));
          onChange(); render();
        },
      },
      groups.map((g) => h("optgroup", { label: g }, OPERATORS[g].map(([op, label]) => option(op, label, clause.op === op)))),
      isSegment ? null : h("optgroup", { label: "other" }, option("segmentMatch", "is in segment", false)));
      if (isSegment) {
        const select = h("select", {
          multiple: true, "aria-label": "Segments", size: Math.min(4, Math.max(2, data.segments.length)),
          onchange: (e) => { clause.values = [...e.target.selectedOptions].map((o) => o.value); onChange(); },
        }, data.segments.map((s) => option(s, s, (clause.values || []).includes(s))));
        row.append(
          h("label", {}, "Context", h("span", {}, "")),
          h("label", {}, "Negate", h("select", { "aria-label": "Negate", onchange: (e) => { clause.negate = e.target.value === "not"; onChange(); } },
            option("", "is", !clause.negate), option("not", "is not", clause.negate))),
          h("label", {}, "Condition", opSelect),
          h("label", {}, "Segments", data.segments.length ? select : h("span", { class: "muted" }, "No segments in this environment")),
        );
      } else {
        row.append(
          h("label", {}, "Kind", h("input", { size: 6, value: clause.contextKind || "user", "aria-label": "Context kind",
            oninput: (e) => { clause.contextKind = e.target.value.trim() || "user"; onChange(); } })),
          h("label", {}, "Attribute", h("input", { size: 12, value: clause.attribute, list: "attribute-names", "aria-label": "Attribute",
            oninput: (e) => { clause.attribute = e.target.value.trim(); onChange(); },
            onchange: () => render() })),
          h("label", {}, "Negate", h("select", { "aria-label": "Negate", onchange: (e) => { clause.negate = e.target.value === "not"; onChange(); } },
            option("", "is", !clause.negate), option("not", "not", clause.negate))),
          h("label", {}, "Operator", opSelect),
          h("label", {}, "Values (comma-separated)", h("input", { size: 28, value: showValues(clause.values), "aria-label": "Values",
            oninput: (e) => { clause.values = parseValues(clause.op, e.target.value); checkPatterns(e.target, clause); onChange(); } })),
          h("span", { class: "field-error", role: "alert", hidden: true }),
        );
        checkPatterns(row.querySelector('input[aria-label="Values"]'), clause);
      }
      row.append(h("button", { type: "button", class: "link danger-text", "aria-label": "Remove condition", onclick: onRemove }, "Remove"));
    };
    render();
    return row;
  }

  const datalist = h("datalist", { id: "attribute-names" }, Object.keys(ATTRIBUTE_TYPES).map((a) => h("option", { value: a })));
  document.body.append(datalist);

  // ----- context kinds --------------------------------------------------------------------
  // The kinds SDKs reported in this environment, and the common ones, offered wherever a kind
  // is typed; any other valid kind can be typed too.
  const isUserKind = (kind) => !kind || kind === "user";
  document.body.append(h("datalist", { id: "context-kinds" }, (data.contextKinds || []).map((k) => h("option", { value: k }))));
  function addKindControl(label, present, add) {
    const input = h("input", { list: "context-kinds", size: 14, placeholder: "organization", "aria-label": label });
    const note = h("span", { class: "field-error", role: "alert", hidden: true });
    const go = () => {
      const kind = input.value.trim();
      // A kind is letters, digits, ".", "_" and "-", and never "kind" (ld-protocol.md §2.7).
      const problem = !kind ? "Type a context kind." :
        !/^[A-Za-z0-9._-]+$/.test(kind) || kind === "kind" ? `“${kind}” is not a context kind: use letters, digits, “.”, “_” and “-”.` :
        present.includes(kind) ? `${kind} is already here.` : "";
      note.textContent = problem; note.hidden = !problem;
      if (!problem) add(kind);
    };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); go(); } });
    return h("div", { class: "ed-row" }, h("label", {}, label, input),
      h("button", { type: "button", class: "secondary small", onclick: go }, "Add"), note);
  }

  // ----- rollouts -------------------------------------------------------------------------
  // Weights are in thousandths of a percent (100000 = 100 %), as LaunchDarkly stores them.
  // Changing one variation's share takes from (or gives to) the others so the total stays 100 %.
  function rebalance(weights, index, wanted) {
    const n = weights.length;
    weights[index] = Math.max(0, Math.min(100000, Math.round(wanted)));
    let excess = weights.reduce((a, b) => a + b, 0) - 100000;
    const others = [];
    for (let k = 1; k < n; k++) others.push((index + k) % n);
    if (excess < 0 && others.length) { weights[others[0]] -= excess; return weights; }
    for (const j of others) {
      if (excess <= 0) break;
      const take = Math.min(excess, weights[j]);
      weights[j] -= take;
      excess -= take;
    }
    return weights;
  }
  Flagstaff.rebalance = rebalance;

  function serveEditor(vr, variations, onChange) {
    const box = h("div", { class: "serve" });
    const render = () => {
      box.replaceChildren();
      const isRollout = !!vr.rollout;
      const select = h("select", {
        "aria-label": "Serve",
        onchange: (e) => {
          if (e.target.value === "rollout") {
            const n = variations.length;
            const base = Math.floor(100000 / n);
            vr.rollout = { variations: variations.map((_, i) => ({ variation: i, weight: base + (i === 0 ? 100000 - base * n : 0) })) };
            delete vr.variation;
          } else {
            delete vr.rollout;
            vr.variation = Number(e.target.value);
          }
          onChange(); render();
        },
      }, variations.map((v, i) => option(String(i), v.label, !isRollout && vr.variation === i)),
      option("rollout", "a percentage rollout", isRollout));
      box.append(h("label", { class: "ed-row" }, "Serve ", select));
      if (!isRollout) return;
      const rollout = vr.rollout;
      const weights = variations.map((_, i) => (rollout.variations.find((w) => w.variation === i) || { weight: 0 }).weight);
      const grid = h("div", { class: "ed-rollout", role: "group", "aria-label": "Rollout percentages" });
      const sliders = [];
      const numbers = [];
      const total = h("p", { class: "ed-total", "aria-live": "polite" });
      const apply = () => {
        rollout.variations = weights.map((weight, variation) => {
          const existing = rollout.variations.find((w) => w.variation === variation) || {};
          return { ...existing, variation, weight };
        });
        weights.forEach((w, i) => { sliders[i].value = w / 1000; numbers[i].value = w / 1000; });
        total.textContent = `Total ${weights.reduce((a, b) => a + b, 0) / 1000} %`;
        onChange();
      };
      variations.forEach((v, i) => {
        const slider = h("input", { type: "range", min: 0, max: 100, step: 1, value: weights[i] / 1000, "aria-label": `Percentage for ${v.label}`,
          oninput: (e) => { rebalance(weights, i, Number(e.target.value) * 1000); apply(); } });
        const number = h("input", { type: "number", min: 0, max: 100, step: 0.001, value: weights[i] / 1000, "aria-label": `Percent for ${v.label}`,
          onchange: (e) => { rebalance(weights, i, Number(e.target.value) * 1000); apply(); } });
        sliders.push(slider); numbers.push(number);
        grid.append(h("span", {}, v.label), slider, h("span", {}, number, " %"));
      });
      box.append(grid, total,
        h("div", { class: "ed-row" },
          h("label", {}, "Bucket by attribute", h("input", { size: 10, value: rollout.bucketBy || "key", "aria-label": "Bucket by",
            oninput: (e) => { const v = e.target.value.trim(); if (v && v !== "key") rollout.bucketBy = v; else delete rollout.bucketBy; onChange(); } })),
          h("label", {}, "of context kind", h("input", { size: 8, value: rollout.contextKind || "user", "aria-label": "Bucket context kind",
            oninput: (e) => { const v = e.target.value.trim(); if (v && v !== "user") rollout.contextKind = v; else delete rollout.contextKind; onChange(); } }))));
      apply();
    };
    render();
    return box;
  }

  // ----- targeting editor -----------------------------------------------------------------
  function targetingEditor(root) {
    const stored = data.targeting;
    const state = clone(stored);
    const variations = data.variations;
    const snapshot = () => JSON.stringify(normalise(state));
    // Empty lists go; once any other kind is targeted, every user target keeps a placeholder
    // in `contextTargets`, since evaluation then walks only that list and reaches user
    // targets through their placeholders (ld-protocol.md §3.3, as instructions.rs does).
    const normalise = (t) => {
      const out = clone(t);
      out.targets = (out.targets || []).filter((x) => x.values && x.values.length);
      let listed = (out.contextTargets || []).filter((x) => isUserKind(x.contextKind) || (x.values && x.values.length));
      if (listed.some((x) => !isUserKind(x.contextKind))) {
        for (const target of out.targets) {
          if (!listed.some((x) => isUserKind(x.contextKind) && x.variation === target.variation)) {
            listed.unshift({ contextKind: "user", values: [], variation: target.variation });
          }
        }
        listed = listed.filter((x) => !isUserKind(x.contextKind) || out.targets.some((t) => t.variation === x.variation));
      } else {
        listed = [];
      }
      out.contextTargets = listed;
      return out;
    };
    const original = JSON.stringify(normalise(stored));
    const dirtyNote = h("span", { class: "ed-dirty", hidden: true }, "Unsaved changes");
    const changed = () => { dirtyNote.hidden = snapshot() === original; };
    Flagstaff.dirtyChecks.push(() => snapshot() !== original);
    window.addEventListener("beforeunload", (e) => { if (Flagstaff.isDirty() && !Flagstaff.saving) e.preventDefault(); });

    const prereqSection = h("div", { class: "ed-section" });
    const renderPrereqs = () => {
      state.prerequisites = state.prerequisites || [];
      prereqSection.replaceChildren(h("h3", {}, "Prerequisites",
        h("button", { type: "button", class: "secondary small", disabled: !data.flags.length,
          onclick: () => { state.prerequisites.push({ key: data.flags[0].key, variation: 0 }); changed(); renderPrereqs(); } }, "Add prerequisite")));
      if (!state.prerequisites.length) prereqSection.append(h("p", { class: "muted" }, "None: this flag does not depend on another."));
      state.prerequisites.forEach((p, i) => {
        const flag = data.flags.find((f) => f.key === p.key) || { key: p.key, variations: [] };
        prereqSection.append(h("div", { class: "ed-row" },
          h("label", {}, "Flag", h("select", { "aria-label": "Prerequisite flag", onchange: (e) => { p.key = e.target.value; p.variation = 0; changed(); renderPrereqs(); } },
            data.flags.map((f) => option(f.key, f.key, f.key === p.key)))),
          h("label", {}, "must serve", h("select", { "aria-label": "Prerequisite variation", onchange: (e) => { p.variation = Number(e.target.value); changed(); } },
            flag.variations.map((label, vi) => option(String(vi), label, vi === p.variation)))),
          h("button", { type: "button", class: "link danger-text", onclick: () => { state.prerequisites.splice(i, 1); changed(); renderPrereqs(); } }, "Remove")));
      });
    };

    // Individual targets of every context kind: user keys in `targets`, other kinds in
    // `contextTargets`, one box per kind and variation.
    const targetsSection = h("div", { class: "ed-section" });
    const addedKinds = [];
    const renderTargets = () => {
      state.targets = state.targets || [];
      state.contextTargets = state.contextTargets || [];
      const kinds = ["user"];
      for (const t of state.contextTargets) if (!kinds.includes(t.contextKind || "user")) kinds.push(t.contextKind);
      for (const k of addedKinds) if (!kinds.includes(k)) kinds.push(k);
      targetsSection.replaceChildren(h("h3", {}, "Individual targets"));
      kinds.forEach((kind) => {
        const user = isUserKind(kind);
        const list = user ? state.targets : state.contextTargets;
        const find = (i) => list.find((t) => t.variation === i && (user || t.contextKind === kind));
        const group = h("fieldset", { class: "ed-kind", "data-kind": kind }, h("legend", {}, user ? "Users" : `Context kind “${kind}”`));
        variations.forEach((v, i) => {
          const target = find(i);
          group.append(h("label", { class: "block" }, `Serve ${v.label} to`,
            h("textarea", { class: "keys", rows: 1, placeholder: `Paste ${kind} keys, separated by commas, spaces or lines`,
              "aria-label": `${user ? "User" : kind} keys served ${v.label}`,
              value: target ? target.values.join(", ") : "",
              oninput: (e) => {
                const values = e.target.value.split(/[\s,]+/).filter((x) => x);
                let found = find(i);
                if (!found) { found = user ? { values: [], variation: i } : { contextKind: kind, values: [], variation: i }; list.push(found); }
                found.values = values;
                changed();
              } })));
        });
        targetsSection.append(group);
      });
      targetsSection.append(addKindControl("Target another context kind", kinds, (kind) => { addedKinds.push(kind); renderTargets(); }));
    };

    const rulesSection = h("div", { class: "ed-section" });
    const renderRules = () => {
      state.rules = state.rules || [];
      rulesSection.replaceChildren(h("h3", {}, "Rules (the first that matches wins)",
        h("button", { type: "button", class: "secondary small", "data-testid": "add-rule",
          onclick: () => {
            state.rules.push({ clauses: [{ contextKind: "user", attribute: "country", op: "in", values: [], negate: false }], variation: 0, trackEvents: false });
            changed(); renderRules();
          } }, "Add rule")));
      if (!state.rules.length) rulesSection.append(h("p", { class: "muted" }, "No rules."));
      state.rules.forEach((rule, i) => {
        const card = h("div", { class: "ed-rule", id: rule.id ? `edit-rule-${rule.id}` : null, "data-rule-index": i });
        const head = h("div", { class: "ed-rule-head" }, `Rule ${i + 1}`,
          h("span", {},
            h("button", { type: "button", class: "link", disabled: i === 0, "aria-label": `Move rule ${i + 1} up`, onclick: () => { [state.rules[i - 1], state.rules[i]] = [state.rules[i], state.rules[i - 1]]; changed(); renderRules(); } }, "↑"), " ",
            h("button", { type: "button", class: "link", disabled: i === state.rules.length - 1, "aria-label": `Move rule ${i + 1} down`, onclick: () => { [state.rules[i + 1], state.rules[i]] = [state.rules[i], state.rules[i + 1]]; changed(); renderRules(); } }, "↓"), " ",
            h("button", { type: "button", class: "link danger-text", onclick: () => { state.rules.splice(i, 1); changed(); renderRules(); } }, "Delete rule")));
        card.append(head, h("p", { class: "muted" }, "If all of these are true:"));
        rule.clauses.forEach((c, ci) => card.append(clauseEditor(c, changed, () => { rule.clauses.splice(ci, 1); changed(); renderRules(); })));
        card.append(h("button", { type: "button", class: "link", onclick: () => { rule.clauses.push({ contextKind: "user", attribute: "", op: "in", values: [], negate: false }); changed(); renderRules(); } }, "+ Add condition"));
        const vr = rule;
        card.append(serveEditor(vr, variations, changed));
        rulesSection.append(card);
      });
    };

    const defaultSection = h("div", { class: "ed-section", "data-testid": "default-rule" }, h("h3", {}, "Default rule (when no target or rule matches)"));
    state.fallthrough = state.fallthrough || { variation: 0 };
    defaultSection.append(serveEditor(state.fallthrough, variations, changed));

    const offSection = h("div", { class: "ed-section" }, h("h3", {}, "When targeting is off"),
      h("label", { class: "ed-row" }, "Serve ", h("select", { "aria-label": "Off variation", onchange: (e) => { state.offVariation = Number(e.target.value); changed(); } },
        variations.map((v, i) => option(String(i), v.label, state.offVariation === i)))));

    const footer = h("div", { class: "ed-footer" }, dirtyNote,
      h("button", { type: "button", class: "secondary", onclick: () => { Flagstaff.dirtyChecks.length = 0; window.location.reload(); } }, "Discard changes"),
      h("button", { type: "button", class: "primary", "data-testid": "review-save", onclick: () => {
        Flagstaff.review({ kind: "targeting", value: normalise(state), version: data.version, where: `Flag ${data.flagKey} in ${data.environment}` });
      } }, "Review and save"));

    renderPrereqs(); renderTargets(); renderRules();
    root.replaceChildren(prereqSection, targetsSection, rulesSection, defaultSection, offSection, footer);
  }

  // ----- segment editor -------------------------------------------------------------------
  function segmentEditor(root) {
    const stored = data.segment;
    const state = clone(stored);
    const original = JSON.stringify(stored);
    const dirtyNote = h("span", { class: "ed-dirty", hidden: true }, "Unsaved changes");
    const changed = () => { dirtyNote.hidden = JSON.stringify(state) === original; };
    Flagstaff.dirtyChecks.push(() => JSON.stringify(state) !== original);
    const split = (text) => text.split(/[\s,]+/).filter((x) => x);
    const keys = (field, label) => h("label", { class: "block" }, label,
      h("textarea", { class: "keys", rows: 3, value: (state[field] || []).join("\n"), "aria-label": label,
        placeholder: "Paste keys, separated by commas, spaces or lines",
        oninput: (e) => { state[field] = split(e.target.value); changed(); } }));
    // Keys of another kind live in `includedContexts` / `excludedContexts`, one entry per kind.
    const kindKeys = (field, kind, label) => {
      const entry = () => (state[field] || []).find((t) => t.contextKind === kind);
      return h("label", { class: "block" }, label,
        h("textarea", { class: "keys", rows: 2, value: entry() ? entry().values.join("\n") : "", "aria-label": label,
          placeholder: "Paste keys, separated by commas, spaces or lines",
          oninput: (e) => {
            state[field] = state[field] || [];
            let found = entry();
            if (!found) { found = { contextKind: kind, values: [] }; state[field].push(found); }
            found.values = split(e.target.value);
            changed();
          } }));
    };
    const addedKinds = [];
    const listsSection = h("div", { class: "ed-section" });
    const renderLists = () => {
      const kinds = [];
      for (const field of ["includedContexts", "excludedContexts"]) {
        for (const t of state[field] || []) if (!isUserKind(t.contextKind) && !kinds.includes(t.contextKind)) kinds.push(t.contextKind);
      }
      for (const k of addedKinds) if (!kinds.includes(k)) kinds.push(k);
      listsSection.replaceChildren(h("h3", {}, "Included and excluded keys"),
        h("fieldset", { class: "ed-kind", "data-kind": "user" }, h("legend", {}, "Users"),
          keys("included", "Always include user keys"), keys("excluded", "Always exclude user keys")),
        ...kinds.map((kind) => h("fieldset", { class: "ed-kind", "data-kind": kind }, h("legend", {}, `Context kind “${kind}”`),
          kindKeys("includedContexts", kind, `Always include ${kind} keys`), kindKeys("excludedContexts", kind, `Always exclude ${kind} keys`))),
        addKindControl("List keys of another context kind", ["user", ...kinds], (kind) => { addedKinds.push(kind); renderLists(); }));
    };
    // Lists left empty go, so that adding a kind and typing nothing changes nothing.
    const withoutEmptyLists = (segment) => {
      const out = clone(segment);
      for (const field of ["includedContexts", "excludedContexts"]) {
        if (out[field]) out[field] = out[field].filter((t) => t.values && t.values.length);
      }
      return out;
    };
    const rulesSection = h("div", { class: "ed-section" });
    const renderRules = () => {
      state.rules = state.rules || [];
      rulesSection.replaceChildren(h("h3", {}, "Rules (a context matching any rule is in the segment)",
        h("button", { type: "button", class: "secondary small", onclick: () => { state.rules.push({ clauses: [{ contextKind: "user", attribute: "email", op: "endsWith", values: [], negate: false }] }); changed(); renderRules(); } }, "Add rule")));
      state.rules.forEach((rule, i) => {
        const card = h("div", { class: "ed-rule" }, h("div", { class: "ed-rule-head" }, `Rule ${i + 1}`,
          h("button", { type: "button", class: "link danger-text", onclick: () => { state.rules.splice(i, 1); changed(); renderRules(); } }, "Delete rule")));
        rule.clauses.forEach((c, ci) => card.append(clauseEditor(c, changed, () => { rule.clauses.splice(ci, 1); changed(); renderRules(); })));
        card.append(h("button", { type: "button", class: "link", onclick: () => { rule.clauses.push({ contextKind: "user", attribute: "", op: "in", values: [], negate: false }); changed(); renderRules(); } }, "+ Add condition"));
        card.append(h("label", { class: "ed-row" }, "Include ",
          h("input", { type: "number", min: 0, max: 100, step: 0.001, value: rule.weight === undefined || rule.weight === null ? 100 : rule.weight / 1000, "aria-label": "Percent included",
            onchange: (e) => { const pct = Math.max(0, Math.min(100, Number(e.target.value))); if (pct >= 100) delete rule.weight; else rule.weight = Math.round(pct * 1000); changed(); } }),
          " % of matching contexts"));
        rulesSection.append(card);
      });
    };
    renderRules();
    // A large segment's lists are not in the page: they change through "Add or remove keys",
    // and a save keeps them as stored.
    const lists = data.listsElsewhere
      ? h("div", { class: "ed-section" }, h("h3", {}, "Included and excluded keys"),
        h("p", { class: "muted" }, "This segment lists too many keys to edit here: use “Add or remove keys” above."))
      : (renderLists(), listsSection);
    // The name and description, for people; SDKs never receive them.
    const text = (field, label, attributes) => h("label", { class: "block" }, label,
      h(attributes.rows ? "textarea" : "input", Object.assign({ value: state[field] || "", "data-testid": `segment-${field}`,
        oninput: (e) => { if (e.target.value.trim()) state[field] = e.target.value; else delete state[field]; changed(); } }, attributes)));
    const labels = h("div", { class: "ed-section" }, h("h3", {}, "Name and description"),
      text("name", "Name", { maxlength: 200 }), text("description", "Description", { maxlength: 2000, rows: 2 }));
    root.replaceChildren(
      labels,
      lists,
      rulesSection,
      h("div", { class: "ed-footer" }, dirtyNote,
        h("button", { type: "button", class: "secondary", onclick: () => { Flagstaff.dirtyChecks.length = 0; window.location.reload(); } }, "Discard changes"),
        h("button", { type: "button", class: "primary", onclick: () => Flagstaff.review({ kind: "segment", value: withoutEmptyLists(state), version: data.version, where: `Segment ${data.segmentKey} in ${data.environment}` }) }, "Review and save")));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const editor = document.getElementById("editor");
    if (editor && data.canEdit) targetingEditor(editor);
    else if (editor) editor.replaceChildren(h("p", { class: "muted" }, "Your role cannot change this environment."));
    const segment = document.getElementById("segment-editor");
    if (segment && data.canEdit) segmentEditor(segment);

    // The kill switch changes only `on`, from what is stored (not from unsaved edits).
    const toggle = document.getElementById("toggle");
    if (toggle && data.targeting) {
      toggle.addEventListener("click", () => {
        const value = clone(data.targeting);
        value.on = !value.on;
        const action = `Turn ${value.on ? "on" : "off"} in ${data.environmentName || data.environment}`;
        Flagstaff.review({ kind: "targeting", value, version: data.version, action, where: `${action}: ${data.flagKey}` });
      });
    }
    // History: restoring a version is an edit like any other, reviewed against what is stored.
    document.querySelectorAll("button.restore").forEach((button) => {
      button.addEventListener("click", () => {
        const value = JSON.parse(button.dataset.restore);
        Flagstaff.review({ kind: "targeting", value, version: data.version, where: `Restore ${data.flagKey} in ${data.environment} to this version`,
          comment: `Restored from ${button.dataset.restoreFrom}` });
      });
    });
  });
})();

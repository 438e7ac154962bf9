"""The page of `mcutext report`: HTML from the data of mcutext.studies.report, charts by matplotlib.

One file and nothing else: the styles and the script are inline, every chart is a matplotlib
SVG inlined as a data: URI (an <img>, so the charts' element ids never meet), and a Content
Security Policy forbids every load from elsewhere, so the page needs no network (and a test
that opens it in a browser sees an error for anything that would have loaded).

Every figure shown in text is a `<span class="num" data-key=KEY data-value=JSON>`, KEY naming
the figure in the data block (`<script type="application/json" id="mcutext-report-data">`).
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np

from ..common.outputs import REPORT_MARK

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")
SECTIONS = {"accuracy": "Accuracy", "explanations": "Explanations", "boards": "Device",
            "robustness": "Robustness", "provenance": "Provenance"}
FEW_CLASSES = 12      # counts in the confusion matrix's cells, labels on its axes
MANY_CLASSES = 40     # above: class indices on the axes, precision-recall as a scatter

# Colours of the parts (flash and RAM bars) and of the two series of the charts.
PART_COLOURS = {"weights": "#3b6ea8", "encoding table": "#8fb3dc", "runtime": "#e39b32",
                "protocol text": "#f2cf8a", "personalization": "#5aa469",
                "activation arena": "#6a4c93", "personalization (head)": "#9bd18f",
                "other static": "#c08552", "stack bound": "#b04a4a",
                "stack reserve beyond the bound": "#e8b7b7", "stack reserve": "#e8b7b7"}
BLUE, ORANGE, GREEN = "#3b6ea8", "#e39b32", "#5aa469"


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def num(key: str, value, fmt: str = "{:.4f}") -> str:
    """A figure of the data block, shown with `fmt` ('pct': a percentage, 'int': 1,234)."""
    if value is None:
        return f'<span class="num na" data-key="{esc(key)}" data-value="null">-</span>'
    if fmt == "pct":
        text = f"{100 * value:.1f} %"
    elif fmt == "int":
        text = f"{int(value):,}"
    else:
        text = fmt.format(value)
    return (f'<span class="num" data-key="{esc(key)}" data-value="{esc(json.dumps(value))}">'
            f"{esc(text)}</span>")


# --- charts -------------------------------------------------------------------------------
def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), layout="constrained")


def chart(fig, alt: str, cls: str = "chart") -> str:
    """A matplotlib figure as an inline SVG image."""
    import matplotlib
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mcutext",
                                "font.size": 9,
                                "font.family": ["DejaVu Sans", "sans-serif"]}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="{cls}" alt="{esc(alt)}" src="data:image/svg+xml;base64,{b64}">'


def confusion_chart(labels: list[str], matrix) -> str:
    m = np.array(matrix, dtype=np.float64)
    c = len(labels)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 3.6 if c <= FEW_CLASSES else 6.2
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if c <= MANY_CLASSES:
        fs = 9 if c <= FEW_CLASSES else 6
        ax.set_xticks(range(c), labels, rotation=90 if c > 4 else 0, fontsize=fs)
        ax.set_yticks(range(c), labels, fontsize=fs)
    else:
        ticks = list(range(0, c, 10))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yticks(ticks, [str(t) for t in ticks])
    if c <= FEW_CLASSES:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted" + ("" if c <= MANY_CLASSES else " (class number)"))
    ax.set_ylabel("true" + ("" if c <= MANY_CLASSES else " (class number)"))
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return chart(fig, "confusion matrix: share of each true class per predicted class")


def per_class_chart(per_class: dict) -> str:
    labels = list(per_class)
    p = [per_class[k]["precision"] for k in labels]
    r = [per_class[k]["recall"] for k in labels]
    if len(labels) > MANY_CLASSES:
        fig = _figure(4.6, 4.0)
        ax = fig.add_subplot()
        ax.scatter(r, p, s=12, color=BLUE, alpha=0.7)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{len(labels)} classes, one point each", fontsize=9)
        ax.grid(alpha=0.3)
        return chart(fig, "precision against recall, one point per class")
    y = np.arange(len(labels))
    fig = _figure(5.2, 0.9 + 0.32 * len(labels))
    ax = fig.add_subplot()
    ax.barh(y - 0.2, p, height=0.38, color=BLUE, label="precision")
    ax.barh(y + 0.2, r, height=0.38, color=ORANGE, label="recall")
    ax.set_yticks(y, labels, fontsize=8 if len(labels) > FEW_CLASSES else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return chart(fig, "precision and recall per class")


def memory_chart(board: dict) -> str:
    b = board["build"]
    fig = _figure(7.4, 1.7)
    ax = fig.add_subplot()
    for row, (what, budget) in enumerate((("flash", b["flash_budget"]),
                                          ("ram", b["ram_budget"]))):
        left = 0.0
        for part in board["memory"][what]:
            w = 100.0 * part["bytes"] / budget
            ax.barh(row, w, left=left, color=PART_COLOURS.get(part["part"], "#999999"),
                    edgecolor="white", linewidth=0.5,
                    label=part["part"] if part["part"] not in ax.get_legend_handles_labels()[1]
                    else None)
            left += w
        ax.text(min(left, 100) + 1, row, f"{left:.1f} % of {budget:,} B",
                va="center", fontsize=8)
    ax.set_yticks([0, 1], ["flash", "RAM"])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the board's budget (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    return chart(fig, f"flash and RAM of the firmware on {board['board']} against its budget",
                 "chart wide")


def ops_chart(device: dict) -> str:
    unit = device["unit"]
    names = ["tokenizer"] + [f"{k}: {o['op']}" for k, o in enumerate(device.get("ops", []))]
    values = [device["tokenizer"]] + [o[unit] for o in device.get("ops", [])]
    y = np.arange(len(names))
    fig = _figure(6.0, 0.8 + 0.3 * len(names))
    ax = fig.add_subplot()
    ax.barh(y, values, color=[ORANGE] + [BLUE] * (len(names) - 1))
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    for k, v in enumerate(values):
        ax.text(v, k, f" {v:,}", va="center", fontsize=7)
    ax.set_xlim(0, max(values) * 1.18 if values else 1)
    from matplotlib.ticker import StrMethodFormatter
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"{unit} per classification")
    ax.grid(axis="x", alpha=0.3)
    return chart(fig, f"{unit} per classification, tokenizer and each operator")


def attack_chart(rob: dict) -> str:
    runs = rob["budgets"]
    xs = [0] + [r["budget"] for r in runs]
    ys = [runs[0]["clean_accuracy"]] + [r["accuracy_under_attack"] for r in runs]
    fig = _figure(4.8, 3.2)
    ax = fig.add_subplot()
    ax.plot(xs, ys, marker="o", color=ORANGE, label=f"accuracy under attack ({rob['attack']})")
    cert = rob.get("certified") or []
    if cert:
        ax.plot([0] + [c["edits"] for c in cert],
                [cert[0]["clean_accuracy"]] + [c["certified_accuracy"] for c in cert],
                marker="s", linestyle="--", color=GREEN, label="certified accuracy")
    ax.set_ylim(0, 1)
    ax.set_xticks(xs)
    ax.set_xlabel("budget: words edited per sentence (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return chart(fig, "accuracy under attack per budget")


# --- sections ---------------------------------------------------------------------------------
def _section(sid: str, title: str, body: str) -> str:
    return (f'<section id="{sid}" data-section="{sid}">\n<h2>{esc(title)}</h2>\n{body}\n'
            "</section>\n")


def _table(head: list[str], rows: list[list[str]], cls: str = "sortable") -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _tile(label: str, value_html: str) -> str:
    return f'<div class="tile"><div class="value">{value_html}</div><div>{esc(label)}</div></div>'


def accuracy_section(data: dict) -> str:
    a = data["accuracy"]
    k = "accuracy"
    tiles = [_tile("accuracy, int8 (TFLite Micro)", num(f"{k}.accuracy", a["accuracy"])),
             _tile("macro-F1, int8", num(f"{k}.macro_f1", a["macro_f1"]))]
    if "float_accuracy" in a:
        tiles += [_tile("accuracy, float (Keras)", num(f"{k}.float_accuracy",
                                                       a["float_accuracy"])),
                  _tile("int8 vs float agreement", num(f"{k}.agreement_with_float",
                                                      a["agreement_with_float"]))]
    excluded = "".join(
        f"<p>'{esc(lab)}' is left out of accuracy and macro-F1 (the recipe's "
        f"eval.exclude_labels): {num(f'{k}.excluded.{lab}.n', e['n'], 'int')} examples, "
        f"recall {num(f'{k}.excluded.{lab}.recall', e['recall'])}.</p>"
        for lab, e in a.get("excluded", {}).items())
    rows = [[esc(lab), num(f"{k}.per_class.{lab}.precision", c["precision"], "{:.3f}"),
             num(f"{k}.per_class.{lab}.recall", c["recall"], "{:.3f}"),
             num(f"{k}.per_class.{lab}.f1", c["f1"], "{:.3f}"),
             num(f"{k}.per_class.{lab}.support", c["support"], "int")]
            for lab, c in a["per_class"].items()]
    labels = a["confusion"]["labels"]
    many = len(labels) > MANY_CLASSES
    pairs = [[esc(p["true"]), esc(p["pred"]),
              num(f"{k}.most_confused.{i}.count", p["count"], "int"),
              num(f"{k}.most_confused.{i}.share", p["share"], "pct")]
             for i, p in enumerate(a["most_confused"])]
    pairs_html = (_table(["true", "predicted as", "examples", "share"], pairs)
                  if pairs else "<p>No example is confused.</p>")
    index = ""
    if many:
        index = ("<details><summary>class numbers of the axes</summary><ol start=\"0\" "
                 "class=\"classes\">" + "".join(f"<li>{esc(lab)}</li>" for lab in labels)
                 + "</ol></details>")
    per_class_table = _table(["label", "precision", "recall", "F1", "support"], rows)
    if len(rows) > FEW_CLASSES:
        order = sorted(range(len(rows)), key=lambda i: list(a["per_class"].values())[i]["f1"])
        worst = _table(["label", "precision", "recall", "F1", "support"],
                       [rows[i] for i in order[:10]])
        per_class_table = (f"<h4>The 10 lowest F1</h4>{worst}<details><summary>all "
                           f"{len(rows)} classes (click a column to sort)</summary>"
                           f"{per_class_table}</details>")
    body = f"""
<p>{num(f'{k}.n', a['n'], 'int')} examples of the {esc(a['split'])} split
(<code>{esc(a['source'])}</code>), the int8 model in the TFLite Micro interpreter; the same
figures as <code>mcutext evaluate {esc(data['bundle']['path'])} --json</code>{
' --limit ' + esc(data['options']['limit']) if data['options']['limit'] else ''}.</p>
<div class="tiles">{''.join(tiles)}</div>
{excluded}
<h3>Confusion matrix</h3>
<div class="row">
<div>{confusion_chart(labels, a['confusion']['matrix'])}{index}</div>
<div class="side"><h4>Most confused pairs</h4><p class="small">Examples of the true
class predicted as another, and their share of the true class.</p>{pairs_html}</div>
</div>
<h3>Per class</h3>
<div class="row"><div>{per_class_chart(a['per_class'])}</div>
<div class="side">{per_class_table}</div></div>
"""
    return _section("accuracy", "Accuracy", body)


def _shade(share: float, top: float, n: int) -> str:
    """`mcutext explain`'s colours (white to deep orange), from an even share (1/n) and below
    (white) to the sentence's top word (deep orange): a nearly even attention stays pale."""
    even = 1.0 / max(n, 1)
    t = 0.0 if top <= even else max(0.0, min(1.0, (share - even) / (top - even)))
    g, b = int(round(255 - t * (255 - 110))), int(round(255 - t * 255))
    return f"background: rgb(255,{g},{b})"


def explanations_section(data: dict) -> str:
    e = data["explanations"]
    if not e["sentences"]:
        return _section("explanations", "Explanations",
                        f"<p>{esc(e.get('note', 'No sentences to explain.'))}</p>")
    items = []
    for i, s in enumerate(e["sentences"]):
        top = max((w["share"] for w in s["words"]), default=0.0)
        words = " ".join(
            f'<span class="w" style="{_shade(w["share"], top, len(s["words"]))}" title="share '
            f'{w["share"]:.3f}, int8 attention {w["attention_int8"]}">{esc(w["word"])}</span>'
            for w in s["words"])
        verdict = ("right" if s["correct"] else "wrong")
        items.append(
            f'<li class="{verdict}"><div class="meta"><b>{verdict}</b>: true '
            f'<b>{esc(s["true"])}</b>, int8 says <b>{esc(s["pred"])}</b> '
            f'({num(f"explanations.sentences.{i}.probability", s["probability"], "{:.3f}")})'
            f'</div><div class="words">{words}</div></li>')
    body = f"""
<p>A seeded sample of {len(e['sentences'])} test sentences, the wrong ones first
({e.get('wrong', 0)} wrong). Each word the model saw is shaded by its share of the int8 model's
attention: white = an even share (1 / the number of words) or less, deep orange = the
sentence's top word (<code>mcutext explain</code>'s colours); hover a word for its
figures.</p>
<ol class="explained">{''.join(items)}</ol>
"""
    return _section("explanations", "Explanations (int8, per word)", body)


def _board_html(i: int, b: dict) -> str:
    k = f"boards.{i}"
    head = f"<h3>{esc(b['board'])} ({esc(b['cpu'])})</h3>"
    if "error" in b:
        return head + f'<p class="error">{esc(b["error"])}</p><p>{esc(b.get("hint", ""))}</p>'
    bd = b["build"]
    parts = []
    for what in ("flash", "ram"):
        for j, p in enumerate(b["memory"][what]):
            parts.append([esc("RAM" if what == "ram" else "flash"), esc(p["part"]),
                          num(f"{k}.memory.{what}.{j}.bytes", p["bytes"], "int")])
    totals = (f"flash {num(f'{k}.build.flash_bytes', bd['flash_bytes'], 'int')} of "
              f"{num(f'{k}.build.flash_budget', bd['flash_budget'], 'int')} bytes, RAM "
              f"{num(f'{k}.build.ram_bytes', bd['ram_bytes'], 'int')} of "
              f"{num(f'{k}.build.ram_budget', bd['ram_budget'], 'int')} bytes (with "
              f"{num(f'{k}.build.stack_reserve', bd['stack_reserve'], 'int')} bytes of stack "
              f"reserve; worst case by the call graph "
              f"{num(f'{k}.build.stack_worst_case', bd['stack_worst_case'], 'int')})")
    note = ""
    if "personalized_does_not_fit" in b:
        note = (f'<p class="warn">With on-device personalization: '
                f'{esc(b["personalized_does_not_fit"])}.</p><p>Shown: the classification-only '
                f"firmware (<code>--no-personalize</code>).</p>")
    flag = "" if bd["personalize"] else " --no-personalize"
    extra = note + (f"<p>{totals}. Model: int8 weights "
             f"{num(f'{k}.build.weights_bytes', bd['weights_bytes'], 'int')} bytes, "
             f"activation arena {num(f'{k}.build.arena_bytes', bd['arena_bytes'], 'int')} "
             f"bytes, {num(f'{k}.build.macs', bd['macs'], 'int')} MACs per classification; "
             f"kernels: {esc(bd['kernels'])}. The same figures as <code>mcutext build BUNDLE "
             f"--board {esc(b['board'])}{flag} --json</code>.</p>")
    if "classification_only" in b:
        co = b["classification_only"]
        big = ", ".join(f"{esc(v['variable'])} {v['bytes']:,}"
                        for v in b.get("personalization_ram", []))
        pers = next((p["bytes"] for p in b["memory"]["ram"]
                     if p["part"] == "personalization (head)"), 0)
        extra += (f"<p>The classification-only build (<code>--no-personalize</code>) needs "
                  f"{num(f'{k}.classification_only.flash_bytes', co['flash_bytes'], 'int')} "
                  f"bytes of flash and "
                  f"{num(f'{k}.classification_only.ram_bytes', co['ram_bytes'], 'int')} of "
                  f"RAM; the personalization's RAM ({pers:,} bytes: the learned head and its "
                  f"buffers) is the difference; its largest variables: {big}.</p>")
    dev = ""
    if "device" in b:
        d = b["device"]
        unit = d["unit"]
        dev = f"""
<h4>{esc(unit.capitalize())} per classification (QEMU {esc(b['qemu_machine'])}, -icount:
{esc(unit)}, not cycles)</h4>
<p>A {num(f'{k}.device.words', d['words'], 'int')}-word test sentence (the median of
{num(f'{k}.device.runs', d['runs'], 'int')} runs): tokenizer
{num(f'{k}.device.tokenizer', d['tokenizer'], 'int')}, model
{num(f'{k}.device.model', d['model'], 'int')}, in all
{num(f'{k}.device.total', d['total'], 'int')} {esc(unit)}; the stack's measured peak
{num(f'{k}.device.stack_peak', d['stack_peak'], 'int')} bytes. Per operator: the
<code>--profile</code> build (a counter read around every kernel call; the last
FULLY_CONNECTED is the head).</p>
<div class="row"><div>{ops_chart(d)}</div><div class="side">{_table(
    ['operator', unit], [[esc(f"{j}: {o['op']}"), num(f'{k}.device.ops.{j}.{unit}', o[unit],
                                                   'int')]
                         for j, o in enumerate(d.get('ops', []))])}</div></div>
<p class="small">Sentence: <q>{esc(d['sentence'])}</q></p>"""
    elif "device_note" in b:
        dev = f"<p>{esc(b['device_note'])}.</p>"
    return f"""{head}
<div class="row"><div>{memory_chart(b)}</div>
<div class="side">{_table(['memory', 'part', 'bytes'], parts)}</div></div>
{extra}{dev}"""


def boards_section(data: dict) -> str:
    boards = data.get("boards") or []
    if not boards:
        return _section("boards", "On the device",
                        "<p>No board given: <code>mcutext report BUNDLE --board "
                        "netduinoplus2</code> adds flash and RAM against the board's budget "
                        "and the instructions per classification.</p>")
    return _section("boards", "On the device",
                    "\n".join(_board_html(i, b) for i, b in enumerate(boards)))


def _marked(ex: dict) -> str:
    parts = []
    for t in ex["tokens"]:
        parts.append(esc(t["gap"]))
        if "segments" not in t:
            parts.append(esc(t["token"]))
            continue
        seg = "".join(f"<ins>{esc(s)}</ins>" if kind == "ins" else
                      f"<del>{esc(s)}</del>" if kind == "del" else esc(s)
                      for kind, s in t["segments"])
        parts.append(f'<span class="edited" title="was: {esc(t["token"])}">{seg}</span>')
    parts.append(esc(ex["tail"]))
    return "".join(parts)


def robustness_section(data: dict) -> str:
    rob = data.get("robustness")
    if not rob:
        return _section("robustness", "Robustness",
                        "<p>No attack asked for: <code>mcutext report BUNDLE --attack "
                        "char</code> adds accuracy under attack per budget and adversarial "
                        "examples.</p>")
    k = "robustness"
    rows = []
    for i, r in enumerate(rob["budgets"]):
        rows.append([num(f"{k}.budgets.{i}.budget", r["budget"], "{}"),
                     num(f"{k}.budgets.{i}.clean_accuracy", r["clean_accuracy"], "pct"),
                     num(f"{k}.budgets.{i}.accuracy_under_attack", r["accuracy_under_attack"],
                         "pct"),
                     num(f"{k}.budgets.{i}.success_rate", r["success_rate"], "pct"),
                     num(f"{k}.budgets.{i}.mean_words_changed", r["mean_words_changed"],
                         "{:.2f}"),
                     num(f"{k}.budgets.{i}.mean_queries", r["mean_queries"], "{:.1f}")])
    table = _table(["budget (words)", "clean", "under attack", "success rate",
                    "words changed", "queries"], rows)
    cert = ""
    if rob.get("certified"):
        crow = [[num(f"{k}.certified.{i}.edits", c["edits"], "{}"),
                 num(f"{k}.certified.{i}.certified_accuracy", c["certified_accuracy"], "pct"),
                 num(f"{k}.certified.{i}.certified", c["certified"], "int"),
                 num(f"{k}.certified.{i}.too_many", c["too_many"], "int"),
                 num(f"{k}.certified.{i}.attacked", c["attacked"], "int")]
                for i, c in enumerate(rob["certified"])]
        cert = ("<h4>Certified accuracy</h4><p>No text with at most K one-character word "
                "edits is misclassified (decided by enumeration, <code>mcutext certify "
                "--edits K</code>, same sample): a lower bound where the attack gives an "
                "upper one.</p>"
                + _table(["edits K", "certified accuracy", "certified", "too many to decide",
                          "witness found"], crow))
    elif rob.get("certified_note"):
        cert = f"<p>{esc(rob['certified_note'])}.</p>"
    exs = []
    for ex in rob["examples"]:
        ok = ex["status"] == "success"
        by = f", found by {esc(ex['found_by'])}" if ex.get("found_by") else ""
        exs.append(f'<li class="{"wrong" if ok else "right"}"><div class="meta">'
                   f'<b>{"fooled" if ok else "held"}</b>: true <b>{esc(ex["true"])}</b>, now '
                   f'<b>{esc(ex["pred"])}</b>; {ex["words_changed"]} word(s) edited, '
                   f'{ex["queries"]} queries{by}</div>'
                   f'<div class="words">{_marked(ex)}</div></li>')
    ex_html = (f"<h4>Adversarial examples (budget {esc(rob['examples_budget'])})</h4>"
               "<p>Edited characters: <ins>added or substituted</ins>, <del>removed</del>; "
               "hover a word for the original.</p>"
               f'<ol class="explained">{"".join(exs)}</ol>' if exs else
               "<p>No example was attacked (the model got none of the sample right).</p>")
    body = f"""
<p><b>{esc(rob['attack'])}</b> on the int8 model (TFLite Micro): {esc(rob['definition'])}.
The attacks' fixed sample of {num(f'{k}.n', rob['n'], 'int')} {esc(rob['split'])} examples,
seed {esc(rob['seed'])}; the same figures as <code>mcutext attack BUNDLE --attack
{esc(rob['attack'])} --budget B --limit {esc(rob['n'])} --json</code>.</p>
<div class="row"><div>{attack_chart(rob)}</div><div class="side">{table}</div></div>
{cert}
{ex_html}
"""
    return _section("robustness", "Robustness", body)


def _kv(rows: list[tuple[str, str]]) -> str:
    return ('<table class="kv">' + "".join(f"<tr><th>{esc(a)}</th><td>{b}</td></tr>"
                                           for a, b in rows) + "</table>")


def provenance_section(data: dict) -> str:
    p = data["provenance"]
    fp = p.get("fingerprint") or {}
    tr = p.get("training") or {}
    rows = [("bundle", f"<code>{esc(data['bundle']['path'])}</code>"),
            ("model", f"{esc(p['name'])} (bundle format {esc(p.get('format'))}, version "
                      f"{esc(p.get('version'))}), dataset {esc(p.get('dataset'))}"),
            ("recipe", f"<code>{esc(p.get('recipe_path') or '-')}</code>"),
            ("int8 model sha256", f"<code>{esc(p.get('int8_sha256') or '-')}</code>"),
            ("int8 operators", esc(", ".join(p.get("int8_ops") or [])))]
    if tr:
        rows.append(("training", f"{tr.get('examples')} examples, {tr.get('epochs')} epochs "
                                 f"in {tr.get('seconds')} s; teacher "
                                 f"{esc(tr.get('teacher') or 'none')}"))
    if fp:
        rows.append(("fingerprint", f"<code>{esc(fp.get('sha256'))}</code>"))
        rows.append(("recipe sha256", f"<code>{esc(fp.get('recipe_sha256'))}</code>"))
        for split, d in (fp.get("data") or {}).items():
            rows.append((f"data: {split}", f"{esc(d.get('file'))} "
                                           f"<code>{esc(d.get('sha256'))}</code>"))
        rows.append(("teacher sha256", f"<code>{esc(fp.get('teacher_sha256') or 'none')}</code>"))
        th = fp.get("threads") or {}
        rows.append(("machine", f"{esc(fp.get('cpu'))}, {esc(th.get('intra_op'))} threads"))
    else:
        rows.append(("fingerprint", "none (a bundle trained before fingerprints were kept)"))
    tools = ", ".join(f"{esc(k)} {esc(v)}" for k, v in (p.get("tools") or {}).items())
    rows.append(("made with", tools or "-"))
    rows.append(("this page", f"{esc(data['generator'])} {esc(data['mcutext'])}, "
                              f"{esc(data['created'])}, in {esc(data['seconds'])} s"))
    recipe = json.dumps(p.get("recipe") or {}, indent=2)
    body = (_kv(rows) + "<details><summary>the recipe as trained</summary><pre>"
            + esc(recipe) + "</pre></details>")
    return _section("provenance", "Provenance", body)


# --- the page ---------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
header{background:#23364d;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85}
nav{padding:6px 28px;background:#e8edf3;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#23364d;text-decoration:none;font-weight:600}
main{padding:0 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:6px 20px 16px;
margin:18px 0}
h2{border-bottom:2px solid #e8edf3;padding-bottom:4px}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.tile{background:#f1f5f9;border-radius:6px;padding:8px 16px;min-width:150px}
.tile .value{font-size:24px;font-weight:700;color:#23364d}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.side{flex:1;min-width:320px;max-height:560px;overflow:auto}
img.chart{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #e5e9ee;padding:3px 10px;text-align:left}
td .num{font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f1f5f9;position:sticky;top:0}
table.kv th{background:none;width:170px;vertical-align:top}
ol.explained{padding-left:28px} ol.explained li{margin:8px 0;padding:4px 8px;
border-left:4px solid #5aa469} ol.explained li.wrong{border-left-color:#b04a4a}
.meta{font-size:13px;color:#555} .words{font-size:15px;margin-top:2px}
.w{padding:1px 2px;border-radius:3px}
ins{background:#f9d36b;text-decoration:none;font-weight:700}
del{color:#b04a4a} .edited{border-bottom:1px dotted #555}
.error{color:#b04a4a;font-weight:600} .warn{color:#8a4b08} .small{font-size:12px;color:#555}
ol.classes{columns:4;font-size:12px} pre{font-size:12px;background:#f6f8fa;padding:8px}
"""

# Errors are made visible to a test that reads the DOM (data-errors); the page's only behaviour
# is sorting a table by a click on its header.
SCRIPT_HEAD = """
window.addEventListener('error', function (e) {
  var el = document.documentElement;
  el.setAttribute('data-errors', (el.getAttribute('data-errors') || '') + e.message + ';');
});
"""
SCRIPT_END = """
(function () {
  function key(td) {
    var n = td.querySelector('[data-value]');
    if (n) {
      var v = JSON.parse(n.getAttribute('data-value'));
      if (typeof v === 'number') return v;
    }
    return td.textContent.trim().toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute('data-dir') === 'asc' ? -1 : 1;
        th.setAttribute('data-dir', dir === 1 ? 'asc' : 'desc');
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var data = JSON.parse(document.getElementById('mcutext-report-data').textContent);
  var root = document.documentElement;
  root.setAttribute('data-height', String(root.scrollHeight));  // for a whole-page screenshot
  root.setAttribute('data-ready', String(data.format));
})();
"""


def data_json(data: dict) -> str:
    """The data block's text: JSON that cannot end the <script> element early."""
    return (json.dumps(data, ensure_ascii=False, default=float)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def render(data: dict) -> str:
    b = data["bundle"]
    title = f"mcutext report: {b['name']}"
    mark = REPORT_MARK.decode("ascii")
    nav = "".join(f'<a href="#{s}">{name}</a>' for s, name in SECTIONS.items())
    sections = (accuracy_section(data) + explanations_section(data) + boards_section(data)
                + robustness_section(data) + provenance_section(data))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{mark} {esc(data['mcutext'])}">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<script>{SCRIPT_HEAD}</script>
<style>{STYLE}</style>
</head>
<body>
<header><h1>{esc(title)}</h1>
<p>{esc(b['path'])}: dataset {esc(b['dataset'])}, {len(b['labels'])} labels; made
{esc(data['created'])} by mcutext {esc(data['mcutext'])}</p></header>
<nav>{nav}</nav>
<main>
{sections}
</main>
<script type="application/json" id="mcutext-report-data">{data_json(data)}</script>
<script>{SCRIPT_END}</script>
</body>
</html>
"""

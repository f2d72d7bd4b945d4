"""A user's own data, as the template tests write it to disk: a ferry company's support
tickets, knowledge-base articles, homework questions, a handbook folder and seed tasks. Their
own field names and values, skewed labels (mostly billing), long texts, Chinese text, and
extra fields (`channel`, `priority`, `attachments`, `refund_nok`) no method knows about and
every method must carry through. Plus the helpers that run a template on them."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from tests.notebook_checks import error_outputs, read_jsonl

ROOT = Path(__file__).resolve().parent.parent

LONG_TICKET = (
    "I booked the Bergen to Hirtshals crossing for a family of four with a camper van, but "
    "the booking page added a cabin we never selected and charged 2 150 NOK for it. "
) * 4
TICKETS = [
    {
        "id": "tkt-0193",
        "input": "My invoice shows a double charge of 412 NOK for the "
        "Stavanger crossing. How do I get a refund?",
        "tag": "billing",
        "channel": "email",
        "priority": 2,
        "attachments": ["invoice-0193.pdf"],
        "refund_nok": 412.0,
    },
    {
        "id": "tkt-0207",
        "input": LONG_TICKET,
        "tag": "billing",
        "channel": "web",
        "priority": 3,
        "attachments": [],
        "refund_nok": 2150.0,
    },
    {
        "id": "tkt-0311",
        "input": "订单号 88213 的船票退款三天了还没有到账，请问怎么处理？",
        "tag": "billing",
        "channel": "wechat",
        "priority": 1,
        "attachments": ["receipt.png", "chat.txt"],
        "refund_nok": None,
    },
    {
        "id": "tkt-0342",
        "input": "Can I bring a kayak on the night ferry to Kiel?",
        "tag": "luggage",
        "channel": "phone",
        "priority": 2,
        "attachments": [],
        "refund_nok": None,
    },
]
CARRIED = ("channel", "priority", "attachments", "refund_nok")  # fields no method knows
ARTICLES = [
    {
        "id": "kb-11",
        "url": "https://help.example/kb/11",
        "section": "boarding",
        "body": "Foot passengers board through the terminal gallery 45 minutes before departure. "
        "Cars are loaded by lane; motorhomes and trailers go last because they park on deck 3.",
    },
    {
        "id": "kb-12",
        "url": "https://help.example/kb/12",
        "section": "boarding",
        "body": "Pets travel in designated cabins or in the kennel area on deck 5. A pet passport "
        "and a rabies vaccination at least 21 days old are checked at the gate. " * 8,
    },
    {
        "id": "kb-13",
        "url": "https://help.example/kb/13",
        "section": "refunds",
        "body": "退款将在取消后十个工作日内退回原支付账户。持灵活票的旅客可免费改签一次。",
    },
]
HOMEWORK = [
    {
        "id": "hw-1",
        "input": "A ferry carries 120 cars and 35 trucks. How many vehicles is that?",
        "target": "155",
        "unit": "vehicles",
        "source": "worksheet 4",
    },
    {
        "id": "hw-2",
        "input": "一张船票 80 元，买 3 张一共多少元？",
        "target": "240",
        "unit": "元",
        "source": "worksheet 4",
    },
    {
        "id": "hw-3",
        "input": "The crossing takes 2.5 hours and leaves at 09:40. When does it "
        "arrive? Answer as HH:MM.",
        "target": "12:10",
        "unit": "time",
        "source": "worksheet 5",
    },
]
# Texts of the templates' own built-in examples: none may show up when the user gave data.
BUILT_IN = (
    "seasons on Earth",
    "autumn rain",
    "reverse a list",
    "Photosynthesis",
    "budget",
    "boil an egg",
    "primary colour",
    "Tom has 3 apples",
    "12 divided by 4",
    "infinitely many primes",
    "Green tea",
    "bicycle chain",
    "sort a list of numbers",
)


DOCS = {
    "policies/refunds.md": "# Refunds\n\nA cancelled crossing is refunded to the original card "
    "within ten working days. Flexible tickets can be changed once without a fee; standard "
    "tickets pay a 150 NOK change fee.\n",
    "luggage.txt": "Kayaks and canoes travel on the car deck, on a roof rack or a trailer. Each "
    "passenger may bring two bags into the cabin; larger items stay in the vehicle.\n",
    "zh/宠物.txt": "宠物必须待在指定的宠物舱或五层甲板的狗舍里。登船时需要出示宠物护照和"
    "至少二十一天前接种的狂犬疫苗证明。导盲犬可以陪同主人进入客舱。\n",
}


SEED_TASKS = [
    {
        "id": "ferry-1",
        "instruction": "Write a polite reply to a passenger whose crossing was "
        "cancelled because of a storm.",
        "input": "",
        "output": "Dear passenger, we are sorry ...",
        "is_classification": False,
    },
    {
        "id": "ferry-2",
        "instruction": "Classify the passenger request as billing, luggage or boarding.",
        "input": "Can I take my dog on deck?",
        "output": "boarding",
        "is_classification": True,
    },
    {
        "id": "ferry-3",
        "instruction": "Explain the difference between a flexible and a standard "
        "ferry ticket in two sentences.",
        "input": "",
        "output": "A flexible ticket ...",
        "is_classification": False,
    },
    {
        "id": "ferry-4",
        "instruction": "Summarise the passenger complaint in one line.",
        "input": "The cabin was cold and the heater did not work all night.",
        "output": "Cold cabin, broken heater.",
        "is_classification": False,
    },
]


# The user's knowledge-base articles, one of them pasted twice under another id.
ARTICLES_WITH_COPY = [*ARTICLES[:2], {**ARTICLES[0], "id": "kb-11-copy"}, *ARTICLES[2:]]


def write_user_file(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    return path


def run_template(name: str, workdir: Path, params: dict) -> nbformat.NotebookNode:
    """Run templates/<name>.ipynb in `workdir` as a user would; no cell may fail."""
    import papermill

    executed = workdir / f"{name}.out.ipynb"
    papermill.execute_notebook(
        str(ROOT / "templates" / f"{name}.ipynb"),
        str(executed),
        parameters=params,
        cwd=str(workdir),
        progress_bar=False,
        kernel_name="python3",
    )
    nb = nbformat.read(executed, as_version=4)
    assert not error_outputs(nb)
    return nb


def assert_from_user_rows(out: Path, rows: list[dict], parent: str = "parent_id") -> list[dict]:
    """Every record of `out` comes from one of the user's rows (by its id in the lineage) and
    carries that row's own extra fields unchanged; the built-in example is nowhere."""
    text = out.read_text(encoding="utf-8")
    for example in BUILT_IN:
        assert example not in text, f"{out.name} holds the built-in example ({example!r})"
    records = read_jsonl(out)
    by_id = {row["id"]: row for row in rows}
    for record in records:
        source = by_id[record["lineage"][parent]]
        for name in CARRIED:
            if name in source:
                assert record[name] == source[name], (name, record[name], source[name])
    return records

"""Reading a finished batch back: its output and error files, line by line, mapped to the
requests by custom id (forgekit.engine.batch_api); every line that cannot be read, every
item that came back in neither file and every count that does not add up is a problem,
reported — the good lines are always kept."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgekit.engine.batch_api import BatchBook


def _with_retries(call: Any, config: Any) -> Any:
    from forgekit.engine.batch_api import _with_retries as retry

    return retry(call, config)


async def collect(book: BatchBook, bid: str, entry: dict[str, Any], batch: Any) -> None:
    api = book.apis[entry["model"]]
    expected = set(entry["custom_ids"])
    seen: set[str] = set()
    answered = errors = unreadable = 0
    for which in ("output", "error"):
        file_id = getattr(batch, f"{which}_file_id", None)
        if not file_id:
            continue
        content = await _with_retries(lambda f=file_id: api.download(f), book.config)
        for lineno, raw in enumerate(content.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                item = api.parse_line(entry["kind"], line)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                unreadable += 1
                book._problem(
                    f"batch {bid}: {which} file {file_id}, line {lineno}: not a valid result "
                    f"line ({exc}); the other lines are kept, its request is sent again"
                )
                continue
            if item.custom_id not in expected:
                book._problem(
                    f"batch {bid}: {which} file {file_id}, line {lineno}: custom_id "
                    f"{item.custom_id!r} was not in this batch; ignored"
                )
                continue
            seen.add(item.custom_id)
            if item.completion is not None:
                answered += 1
                book._account(api, item.completion)
                book.ledger.answer(item.custom_id, item.completion)
                continue
            errors += 1
            book.counts[f"error:{item.error}"] += 1
            if not item.retryable:
                book.ledger.fail(item.custom_id, item.error or "error", item.message)
    missing = expected - seen
    if missing:
        book._problem(
            f"batch {bid} ({batch.status}): {len(missing)} of {len(expected)} requests came "
            f"back in neither the output nor the error file"
            + (f" ({unreadable} result line(s) unreadable)" if unreadable else "")
            + "; they are sent again"
        )
    reconcile(book, bid, batch, len(expected), answered, errors)
    if batch.status != "completed":
        book._problem(
            f"batch {bid} ended {batch.status} with {answered} of {len(expected)} answered; "
            f"the rest are sent again ({book.config.batch_failed})"
        )
    entry.update(
        status=batch.status,
        collected=True,
        answered=answered,
        errors=errors,
        missing=len(missing),
        output_file_id=getattr(batch, "output_file_id", None),
        error_file_id=getattr(batch, "error_file_id", None),
    )
    book.counts["answered"] += answered
    book.ledger.save()


def reconcile(book: BatchBook, bid: str, batch: Any, sent: int, answered: int, errors: int) -> None:
    counts = getattr(batch, "request_counts", None)
    if counts is None:
        return
    total, completed = getattr(counts, "total", None), getattr(counts, "completed", None)
    if total is not None and total != sent:
        book._problem(f"batch {bid}: {sent} requests sent, the provider counts {total}")
    if completed is not None and completed != answered:
        book._problem(
            f"batch {bid}: the provider reports {completed} completed, "
            f"{answered} answers were read back"
        )

"""The support agent: a durable run that crashes, resumes, pauses for review and forks.

Run it with ``clew demo`` (or ``python -m clew.examples.support_agent``). The story:

1. A worker process starts a run for ticket c-42: it looks up billing (one call to the
   billing API, checkpointed), then searches the knowledge base, which times out.
2. The worker process is killed (SIGKILL) in the middle of the search.
3. Once its lease expires, ``agent.recover()`` in this process picks the run up: the
   search is tried again, billing is *not* called again.
4. The agent drafts a reply and pauses for a person; alice approves; the reply is sent.
5. Later bob forks the run from the billing checkpoint to try a refund instead; the
   two branches are compared, and the whole trail is verified.

The external services are simulated; each call is counted in a file so that the
counts hold across processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

import clew
from clew.audit import compare_branches


class Ticket(BaseModel):
    """The agent's state."""

    customer_id: str
    question: str
    strategy: str = "explain"
    billing: dict[str, str] | None = None
    articles: list[str] = []
    draft: str | None = None
    approved_by: str | None = None
    sent: bool = False


# -- simulated external services (each call is counted in a shared file) -------

COUNTERS = Path(os.environ.get("CLEW_DEMO_COUNTERS", Path(tempfile.gettempdir()) / "clew-demo-counters"))


def count(name: str) -> int:
    with COUNTERS.open("a") as f:
        f.write(name + "\n")
    return counts()[name]


def counts() -> Counter[str]:
    return Counter(COUNTERS.read_text().split()) if COUNTERS.exists() else Counter()


def billing_lookup(customer_id: str) -> dict[str, str]:
    count("billing")
    return {"customer": customer_id, "plan": "Pro", "last_charge": "2026-11-02", "amount": "49.00 EUR"}


def kb_search(query: str) -> list[str]:
    n = count("kb")
    if n <= 2:  # the knowledge base is down at first: the call hangs
        Path(str(COUNTERS) + ".kb-hung").touch()
        time.sleep(60)
    return ["KB-112: Pro plan charges are billed on the 2nd", "KB-207: Refunds within 14 days"]


def send_email(to: str, body: str) -> str:
    count("email")
    return f"msg-{counts()['email']}"


# -- the agent ------------------------------------------------------------------


def make_agent(store: clew.Store) -> clew.Agent[Ticket]:
    agent = clew.Agent("support", state=Ticket, store=store, version="1", lease_ttl=1.0)

    @agent.step(start=True)
    def lookup_billing(state: Ticket, ctx: clew.Context) -> str:
        state.billing = ctx.call("billing", billing_lookup, state.customer_id)
        say(f"billing: {state.billing['plan']} plan, last charge {state.billing['amount']}")
        return "search_kb"

    @agent.step
    def search_kb(state: Ticket, ctx: clew.Context) -> str:
        say("searching the knowledge base (timeout 0.3 s, 2 tries)...")
        state.articles = ctx.call(
            "kb",
            kb_search,
            state.question,
            idempotent=True,
            timeout=0.3,
            retry=clew.Retry(attempts=2, backoff=0.05, on=(TimeoutError,)),
        )
        say(f"knowledge base: {len(state.articles)} articles")
        return "draft_reply"

    @agent.step
    def draft_reply(state: Ticket, ctx: clew.Context) -> str:
        if state.strategy == "refund":
            state.draft = (
                f"Hello {state.customer_id}, we refunded {state.billing['amount']}"  # type: ignore[index]
                f" ({state.articles[1].split(': ')[1]})."
            )
        else:
            state.draft = (
                f"Hello {state.customer_id}, your {state.billing['plan']} plan"  # type: ignore[index]
                f" is charged on the 2nd ({state.articles[0].split(': ')[0]})."
            )
        answer = ctx.interrupt({"review": state.draft})
        state.approved_by = answer["reviewer"] if answer.get("approved") else None
        return "send_reply" if state.approved_by else None  # type: ignore[return-value]

    @agent.step
    def send_reply(state: Ticket, ctx: clew.Context) -> None:
        ctx.call("email", send_email, state.customer_id, state.draft)  # not idempotent: never sent twice
        state.sent = True

    return agent


def say(text: str) -> None:
    print(f"  [pid {os.getpid()}] {text}", flush=True)


# -- the story --------------------------------------------------------------------


def worker(db: str) -> None:
    """The first worker: starts the run and is killed during the search."""
    with clew.open(f"sqlite:///{db}") as store:
        make_agent(store).start(Ticket(customer_id="c-42", question="Why was I charged twice?"), run_id="ticket-c42")


def main(db: str | None = None) -> int:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="clew-demo-"))
    db = db or str(workdir / "support.db")
    os.environ["CLEW_DEMO_COUNTERS"] = str(workdir / "counters")
    global COUNTERS
    COUNTERS = workdir / "counters"

    console.rule("[bold]clew demo: a support agent that crashes, resumes, pauses and forks")
    console.print("1. a worker process starts run [bold]ticket-c42[/]", Text(f"(store: {db})"))
    child = subprocess.Popen(
        [sys.executable, "-m", "clew.examples.support_agent", "--worker", "--db", db], env=os.environ.copy()
    )
    hung = Path(str(COUNTERS) + ".kb-hung")
    deadline = time.monotonic() + 30
    while counts()["kb"] < 2 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    while not hung.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    console.print(f"2. [bold red]killed[/] worker pid {child.pid} with SIGKILL during its second knowledge-base try")

    with clew.open(f"sqlite:///{db}") as store:
        agent = make_agent(store)
        main = store.get_branch("ticket-c42")
        console.print(f"   branch main on disk: [bold]{main.status}[/], lease held by {main.lease_owner}")
        time.sleep(max(0.0, (main.lease_expires_at or 0) - time.time()) + 0.05)
        console.print(f"3. lease expired; this process (pid {os.getpid()}) calls agent.recover()")
        recovered = agent.recover()
        paused = recovered[0]
        console.print(f"   run is [bold yellow]{paused.status}[/] for review:")
        console.print(Panel(Text(paused.interrupt["review"]), title="draft reply", expand=False))
        console.print("4. alice approves")
        done = agent.resume("ticket-c42", answer={"approved": True, "reviewer": "alice"}, actor="alice")
        console.print(f"   run is [bold green]{done.status}[/]; reply sent: {done.state.sent}")

        history = agent.history("ticket-c42")
        billing_ckpt = next(c for c in history if c.metadata.get("step") == "lookup_billing")
        console.print(
            f"5. bob forks from the billing checkpoint {billing_ckpt.checkpoint_id[:13]}… with strategy=refund"
        )
        forked = agent.fork(
            billing_ckpt.checkpoint_id,
            branch="refund",
            update={"strategy": "refund"},
            actor="bob",
            reason="customer asked twice; try a refund",
        )
        console.print(Panel(Text(forked.interrupt["review"]), title="draft reply (refund branch)", expand=False))
        agent.resume("ticket-c42", answer={"approved": True, "reviewer": "bob"}, actor="bob", branch="refund")

        cmp = compare_branches(store, "ticket-c42", "main", "refund")
        table = Table(title="branches of ticket-c42", show_lines=True)
        table.add_column("field")
        table.add_column("main")
        table.add_column("refund")
        for d in cmp.diffs:
            table.add_row(Text(d.field), Text(str(d.before)), Text(str(d.after)))
        console.print(table)

        c = counts()
        calls = Table(title="external calls (counted by the services themselves)")
        calls.add_column("service")
        calls.add_column("calls", justify="right")
        calls.add_column("why")
        calls.add_row(
            "billing",
            str(c["billing"]),
            "once: its result was checkpointed before the crash, and the refund branch forked after it",
        )
        calls.add_row(
            "kb",
            str(c["kb"]),
            "two timed-out tries before the crash, one after it, one on the refund branch (idempotent, so tried again)",
        )
        calls.add_row("email", str(c["email"]), "one reply per branch, never repeated")
        console.print(calls)

        report = store.verify("ticket-c42")
        journal = store.list_journal("ticket-c42")
        console.print(
            f"verify: [bold]{'OK' if report.ok else 'FAILED'}[/] ({report.checkpoints} checkpoints, "
            f"{report.blobs} blobs, {report.journal_entries} journal entries, hash-chained)"
        )
        console.print(f"the trail is in {db}; {len(journal)} journal entries. Look at it with:", markup=False)
        console.print(f"  clew history ticket-c42 --db {db}\n  clew export ticket-c42 --db {db}", markup=False)
        console.print(
            "and open it in the web inspector, to resume and fork from the browser (needs clew[ui]; Ctrl-C stops it):\n"
            f"  clew ui --db {db} --agent clew.examples.support_agent:make_agent --run ticket-c42",
            markup=False,
            soft_wrap=True,
        )
        ok = c["billing"] == 1 and c["email"] == 2 and report.ok and done.status == "completed"
        return 0 if ok else 1


def cli(argv: list[str] | None = None) -> int:
    """Command-line entry: ``--db FILE`` keeps the run there (a temporary file by default)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help="SQLite file for the run (a new temporary one by default)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.db)
        return 0
    return main(args.db)


if __name__ == "__main__":
    sys.exit(cli())

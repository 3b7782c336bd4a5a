"""What the bot writes on the Hub, and the replies it reads there.

A pull request (`pr_title`, `pr_description`) proposes one repo's fields; a digest (`digest_title`,
`digest_description`) lists every proposal for one owner in one discussion and says how to accept (the
commands of `read_commands`) or refuse them. Both show each value with where it comes from, its
confidence and its evidence, and end with an invisible marker (`client.marker`, `client.digest_marker`)
by which the bot recognises its own threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..cards import section_heading
from ..suggestions import FieldSuggestion, inferred_from_weights, origins
from .client import digest_marker, marker

__all__ = ["COMMAND_PREFIX", "DigestEntry", "Reply", "digest_answer", "digest_description", "digest_title",
           "pr_description", "pr_title", "read_commands"]

COMMAND_PREFIX = "/hf-probex"
#: A command line in a reply: `/hf-probex accept all`, `/hf-probex accept m-1 acme/m-2`, `/hf-probex refuse`
#: (a Markdown quote of it, "> /hf-probex ...", is someone quoting the digest, and a line of code, indented four
#: spaces or inside a fence, someone showing it: neither is a command).
_COMMAND = re.compile(rf"^ {{0,3}}{re.escape(COMMAND_PREFIX)}[ \t]+(?P<verb>accept|refuse)\b(?P<args>[^\n]*)$",
                      re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _prose_lines(text: str) -> list[str]:
    """The lines of a Markdown reply outside fenced code blocks (an unclosed fence runs to the end, as Markdown
    renders it)."""
    lines, fence = [], None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened[1]
        elif fence is not None:
            if opened and opened[1][0] == fence[0] and len(opened[1]) >= len(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            lines.append(line)
    return lines

_VALIDATION = """\
A value is proposed here only at or above the confidence its source was validated at: a value read from
the model's files or its declared lineage is exact; one from weights routing must reach the routing
threshold; a parent found by comparing the weights with the tree's members must have been right 95 % of
the time on the tree's models whose parents are known; an expert's (trained on other models of the same
model tree) must reach the threshold at which it was 95 % precise on models it had not seen."""


def pr_title(fields: list[FieldSuggestion]) -> str:
    """The pull request's title: which fields it adds, and where their values come from."""
    return f"hf-probex: add {', '.join(f.name for f in fields)} to the model card, from {origins(fields)}"


def pr_description(fields: list[FieldSuggestion], revision: str | None, diff: str) -> str:
    """The pull request's description: what, from where and what evidence, how sure, how to refuse, the marker."""
    read = ("this model's files and a few of its weights" if inferred_from_weights(fields) else "this model's files")
    return f"""\
hf-probex read {read},
and found card fields that the model card does not state. This pull request proposes them; it changes
README.md only: it adds the missing metadata keys (nothing else in the metadata is touched) and a
section "{section_heading(fields)}" that lists them.

{_table(fields)}

{_VALIDATION}

- **Wrong, or not wanted?** Close this pull request: these fields will not be proposed again here.
- **No more proposals at all?** Add the tag `hf-probex-opt-out` to the card's `tags` (or the metadata
  `hf_probex: {{opt_out: true}}`); for all your repos, the tag `hf-probex-opt-out-owner` on any one of them.

<details><summary>The change to README.md</summary>

```diff
{diff.rstrip()}
```
</details>

{marker([f.name for f in fields], revision)}
"""


@dataclass
class DigestEntry:
    """One repo of a digest: its id and the fields a pull request would carry."""

    repo_id: str
    fields: list[FieldSuggestion] = field(default_factory=list)


def digest_title(owner: str, count: int) -> str:
    """The digest's title."""
    models = "model" if count == 1 else "models"
    return f"hf-probex: card fields for {count} of {owner}'s {models}, as pull requests only if you ask"


def digest_description(owner: str, entries: list[DigestEntry]) -> str:
    """The digest: each repo's proposed fields (value, origin, confidence, evidence), how to accept all or some,
    how to refuse, the marker."""
    sections = "\n\n".join(f"#### {i}. {entry.repo_id}\n\n{_table(entry.fields)}" for i, entry in enumerate(entries, 1))
    example = " ".join(e.repo_id.split("/", 1)[1] for e in entries[:2])
    return f"""\
hf-probex reads models' files and a few of their weights, and compares them with the other models of their
model tree. It found card fields that the cards of {len(entries)} of {owner}'s models do not state. Rather than
open a pull request on each, it lists them here, most useful first: nothing changes on your repos unless you ask.

{sections}

{_VALIDATION}

**Want them?** Reply with this line, and hf-probex opens one pull request per model (README.md only: the
missing metadata keys, and a section that lists them as above); you merge or close each:

    {COMMAND_PREFIX} accept all

To take some only, name them: `{COMMAND_PREFIX} accept {example}`.

**Not wanted?** Reply `{COMMAND_PREFIX} refuse`, or close this discussion: hf-probex will not propose anything
on {owner}'s models again.

hf-probex acts on replies from {owner} or, for an organisation, its members, when it next runs.

{digest_marker([e.repo_id for e in entries])}
"""


def digest_answer(done: list[tuple[str, int | None, str | None]], endpoint: str) -> str:
    """The bot's reply in a digest, once it acted on what the owner accepted: for each repo (repo id, the pull
    request's number or None, why there is none) a link to its pull request, or why it opened none."""
    lines = []
    for repo_id, pr_num, why in done:
        if pr_num is not None:
            lines.append(f"- {repo_id}: [pull request #{pr_num}]({endpoint}/{repo_id}/discussions/{pr_num})")
        else:
            lines.append(f"- {repo_id}: no pull request ({_WHY_NONE.get(why or '', why or 'nothing left to propose')})")
    opened = sum(pr_num is not None for _, pr_num, _ in done)
    return (f"Thank you. As you asked, hf-probex opened {opened} pull request{'s' if opened != 1 else ''}:\n\n"
            + "\n".join(lines) + "\n\nEach changes README.md only; merge or close each as you like.")


#: Why an accepted repo got no pull request, for its owner.
_WHY_NONE = {"complete": "its card states every field now", "already-proposed": "an earlier pull request has them",
             "open-pr": "a pull request of hf-probex is open on it", "invalid-card": "its card's metadata does not parse",
             "unsafe-edit": "its card cannot be edited safely", "opt-out-card": "its card opts out",
             "below-threshold": "the fields are no longer confident enough", "not-in-tree": "it left the tree"}


@dataclass
class Reply:
    """What the replies to a digest ask: the repos accepted (ids), and whether the owner refused."""

    accepted: set[str] = field(default_factory=set)
    refused: bool = False


def read_commands(texts: list[str], listed: list[str]) -> Reply:
    """The commands in replies to a digest that listed `listed`, in order: `accept all`, `accept NAME ...` (a
    repo's name or id; names the digest does not list are ignored), `refuse` (final)."""
    reply = Reply()
    by_name = {**{r.split("/", 1)[1].lower(): r for r in listed}, **{r.lower(): r for r in listed}}
    for text in texts:
        for command in filter(None, map(_COMMAND.match, _prose_lines(text))):
            if command["verb"].lower() == "refuse":
                return Reply(reply.accepted, refused=True)
            names = [n.strip("`'\".").lower() for n in re.split(r"[\s,]+", command["args"]) if n.strip()]
            reply.accepted |= set(listed) if names == ["all"] else {by_name[n] for n in names if n in by_name}
    return reply


def _table(fields: list[FieldSuggestion]) -> str:
    rows = "\n".join(f"| `{f.name}` | {_cell(f.value)} | {f.origin} | {f.confidence:.0%} | {_cell(f.evidence)} |"
                     for f in fields)
    return f"| field | proposed value | from | confidence | evidence |\n|---|---|---|---|---|\n{rows}"


def _cell(value: object) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")

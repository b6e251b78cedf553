#!/usr/bin/env python3
"""Writes the Inputs and Outputs tables of each module's README.md from its variables.tf and
outputs.tf (between <!-- BEGIN_TF_DOCS --> and <!-- END_TF_DOCS -->), like terraform-docs.

    python3 infra/docs.py           rewrite the tables
    python3 infra/docs.py --check   exit 1 if a README is out of date (infra/check.sh)

Standard library only. It reads the `terraform fmt` layout: blocks open with `variable "x" {`
and close with `}` at column 0, attributes sit two spaces in.
"""

import json
import pathlib
import re
import sys

INFRA = pathlib.Path(__file__).resolve().parent
BEGIN, END = "<!-- BEGIN_TF_DOCS -->", "<!-- END_TF_DOCS -->"
BLOCK = re.compile(r'^(variable|output) "([^"]+)" \{\s*$')
ATTR = re.compile(r"^  ([a-z_]+)\s*=\s*(.*)$")


def balanced(text):
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth <= 0


def blocks(path):
    """Yields (kind, name, {attribute: raw text}) for the top-level blocks of a file."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = BLOCK.match(lines[i])
        i += 1
        if not match:
            continue
        attrs = {}
        while i < len(lines) and lines[i] != "}":
            attr = ATTR.match(lines[i])
            i += 1
            if not attr:
                continue
            key, value = attr.groups()
            if value.startswith("<<"):
                marker = value.lstrip("<-").strip()
                body = []
                while i < len(lines) and lines[i].strip() != marker:
                    body.append(lines[i].strip())
                    i += 1
                i += 1
                attrs[key] = " ".join(line for line in body if line)
                continue
            while not balanced(value) and i < len(lines):
                value += " " + lines[i].strip()
                i += 1
            attrs[key] = value
        yield match.group(1), match.group(2), attrs


def text(raw):
    """The value of an HCL string literal (or heredoc, already joined)."""
    if raw.startswith('"'):
        return json.loads(raw)
    return raw


def cell(value):
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("|", "\\|").replace("\n", " ")


def code(value):
    value = re.sub(r"\s+", " ", value).replace("( ", "(").replace(" )", ")")
    value = value.replace("{ ", "{").replace(" }", "}").replace(", }", "}").replace(",}", "}")
    if len(value) > 60:
        value = value.split("(", 1)[0] + "(...)"
    return "`" + cell(value) + "`"


def tables(module):
    out = ["## Inputs", "", "| Name | Description | Type | Default | Required |", "|---|---|---|---|:---:|"]
    for _, name, attrs in blocks(module / "variables.tf"):
        required = "default" not in attrs
        default = "n/a" if required else code(attrs["default"])
        out.append(
            f"| `{name}` | {cell(text(attrs.get('description', '')))} | {code(attrs.get('type', 'any'))} "
            f"| {default} | {'yes' if required else 'no'} |"
        )
    out += ["", "## Outputs", "", "| Name | Description |", "|---|---|"]
    for _, name, attrs in blocks(module / "outputs.tf"):
        out.append(f"| `{name}` | {cell(text(attrs.get('description', '')))} |")
    return "\n".join(out)


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for readme in sorted(INFRA.glob("modules/*/README.md")):
        content = readme.read_text()
        if BEGIN not in content or END not in content:
            stale.append(f"{readme.relative_to(INFRA.parent)}: no {BEGIN} ... {END} markers")
            continue
        head, rest = content.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        updated = f"{head}{BEGIN}\n{tables(readme.parent)}\n{END}{tail}"
        if updated != content:
            if check:
                stale.append(f"{readme.relative_to(INFRA.parent)} is out of date: run python3 infra/docs.py")
            else:
                readme.write_text(updated)
                print(f"updated {readme.relative_to(INFRA.parent)}")
    for problem in stale:
        print(problem, file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

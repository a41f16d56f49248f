"""A named section of a Markdown results file, between `<!-- NAME -->` and
`<!-- /NAME -->`, so one script's results survive another's rewrite of the file.
    section.py get FILE NAME          prints the section (nothing if absent)
    section.py put FILE NAME CONTENT  replaces the section with CONTENT's text, or appends it
"""
import os
import sys


def markers(name):
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def split(text, name):
    start, end = markers(name)
    i = text.find(start)
    j = text.find(end, i + 1) if i >= 0 else -1
    if i < 0 or j < 0:
        return text, None, ""
    return text[:i], text[i + len(start):j].strip("\n"), text[j + len(end):]


def main():
    op, path, name = sys.argv[1:4]
    text = open(path).read() if os.path.exists(path) else ""
    before, body, after = split(text, name)
    if op == "get":
        if body is not None:
            print(body)
        return
    content = open(sys.argv[4]).read().strip("\n")
    start, end = markers(name)
    block = f"{start}\n{content}\n{end}\n"
    if body is None:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    else:
        text = before + block + after.lstrip("\n")
    open(path, "w").write(text)


if __name__ == "__main__":
    main()

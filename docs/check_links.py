"""Check every link and image inside the built site: ``python docs/check_links.py site``.

Sphinx (-n) checks the references it resolves itself; this checks the HTML it wrote,
as a browser would follow it: every ``href`` and ``src`` that points inside the site
must name a file that exists, and a ``#fragment`` must name an element of that page.
Links to other sites are not followed (the build runs offline). Exit status 1, with
one line per problem, when anything is broken.
"""
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

LINKING = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src", "iframe": "src"}


class Page(HTMLParser):
    """The links and the element ids of one HTML file."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key) and (key == "id" or tag == "a"):
                self.ids.add(attrs[key])
        target = attrs.get(LINKING.get(tag, ""))
        if target:
            self.links.append((tag, target, self.getpos()[0]))


def read(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def problems(site):
    site = Path(site).resolve()
    pages = {path: read(path) for path in sorted(site.rglob("*.html"))}
    found = []
    for path, page in pages.items():
        for tag, target, line in page.links:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "javascript:", "data:")):
                continue
            where = f"{path.relative_to(site)}:{line}"
            file = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/") or file.is_dir():
                file = file / "index.html"
            if site not in file.parents and file != site:
                found.append(f"{where}: <{tag}> {target} points outside the site")
            elif not file.is_file():
                found.append(f"{where}: <{tag}> {target}: no such file")
            elif parts.fragment and file.suffix == ".html":
                ids = pages[file].ids if file in pages else read(file).ids
                if unquote(parts.fragment) not in ids:
                    found.append(f"{where}: <{tag}> {target}: no element with id {parts.fragment!r}")
    return found, len(pages)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python docs/check_links.py SITE_FOLDER")
    if not Path(argv[0]).is_dir():
        sys.exit(f"check_links: {argv[0]} is not a folder")
    found, n_pages = problems(argv[0])
    for line in found:
        print(line)
    print(f"check_links: {n_pages} pages, {len(found)} broken links or images", file=sys.stderr)
    return 1 if found or n_pages == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

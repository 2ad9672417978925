"""Result blocks the benchmark scripts write into a Markdown page between two marker
comments (``<!-- benchmark.py:cost-of-spiking -->`` ... ``<!-- /benchmark.py:cost-of-spiking
-->``): the page's other text is kept as it is. The page is ``docs/en/benchmarks.md``
(:data:`BENCHMARKS_PAGE`); any file with the markers works.
"""
import os.path as osp

BLOCK_BEGIN = '<!-- benchmark.py:cost-of-spiking -->'
BLOCK_END = '<!-- /benchmark.py:cost-of-spiking -->'
#: the former names, from when the block lived in the README (kept for one release)
README_BEGIN, README_END = BLOCK_BEGIN, BLOCK_END
#: where the results go, relative to the repository root
BENCHMARKS_PAGE = osp.join('docs', 'en', 'benchmarks.md')


def block_problem(path):
    """None if ``path`` holds exactly one marked block to rewrite, else what is wrong (a line)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        return f'cannot read {path}: {e.strerror}'
    b, e = text.count(BLOCK_BEGIN), text.count(BLOCK_END)
    if b != 1 or e != 1 or text.index(BLOCK_BEGIN) > text.index(BLOCK_END):
        return (f'{path} needs one "{BLOCK_BEGIN}" line followed by one "{BLOCK_END}" line '
                f'(found {b} and {e}); add them where the table should go')
    return None


def replace_block(text, block):
    """``text`` with what lies between the markers replaced by ``block``; all else unchanged.
    Raises ValueError if the markers are missing, repeated or out of order."""
    b, e = text.count(BLOCK_BEGIN), text.count(BLOCK_END)
    if b != 1 or e != 1 or text.index(BLOCK_BEGIN) > text.index(BLOCK_END):
        raise ValueError(f'need one "{BLOCK_BEGIN}" followed by one "{BLOCK_END}" '
                         f'(found {b} and {e})')
    head, rest = text.split(BLOCK_BEGIN)
    _, tail = rest.split(BLOCK_END)
    return f'{head}{BLOCK_BEGIN}\n{block.strip()}\n{BLOCK_END}{tail}'


#: the former names (kept for one release)
readme_problem, replace_readme_block = block_problem, replace_block

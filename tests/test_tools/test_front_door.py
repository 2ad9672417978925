"""The commands a user types first: the README's front-door configs run through the real
tools, and every config or tool path the documentation names exists. The documentation is a
short README beside the user guide in docs/: the README links every page, every relative link
resolves, and the measured tables live in docs/en/benchmarks.md.

The front door is ``tools/train.py configs/det/sdt_srb_coco.py`` and ``tools/test.py`` on the
same config. Here they run unchanged except for what a user with a tiny dataset would change
on the command line: where the data is, one epoch, one image per batch. The data is a
generated COCO-layout dataset whose categories carry COCO class names, so the config's own
80-class ``CocoDataset`` and heads read it as they would read COCO.
"""
import json
import os
import os.path as osp
import re

import pytest

from mmsnn.datasets.demo_coco import generate_demo_coco

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FRONT_DOOR = ('configs/det/sdt_srb_coco.py', 'configs/seg/sdt_srb_ade20k.py')
#: where users read commands: every configs/... or tools/... path named there must exist
DOC_GLOBS = ('README.md', 'configs/*/README.md', 'docs/**/*.md')
PATH_IN_DOCS = re.compile(r'(?<![\w/.-])((?:configs|tools)/[\w./-]+\.(?:py|sh))(?![\w{$])')


def _doc_files():
    import glob
    return sorted({p for g in DOC_GLOBS for p in glob.glob(osp.join(REPO, g), recursive=True)})


def test_documented_paths_exist():
    """A path in the docs that does not exist is a command that stops for the user."""
    missing = []
    for doc in _doc_files():
        with open(doc) as f:
            for lineno, line in enumerate(f, 1):
                for path in PATH_IN_DOCS.findall(line):
                    if not osp.exists(osp.join(REPO, path)):
                        missing.append(f'{osp.relpath(doc, REPO)}:{lineno}: {path}')
    assert not missing, '\n'.join(missing)


#: the user guide beside the README (mmdet's split); the README links each of them
DOC_PAGES = ('docs/en/get_started.md', 'docs/en/user_guides/train_test.md',
             'docs/en/user_guides/custom_dataset.md',
             'docs/en/user_guides/released_checkpoints.md', 'docs/en/user_guides/st_erf.md',
             'docs/en/user_guides/energy.md', 'docs/en/user_guides/fast_path.md',
             'docs/en/benchmarks.md', 'docs/en/architecture.md')
README_MAX_LINES = 150
#: the block tools/analysis/benchmark.py --readme rewrites; written here as a user sees it
BENCHMARK_BEGIN = '<!-- benchmark.py:cost-of-spiking -->'
BENCHMARK_END = '<!-- /benchmark.py:cost-of-spiking -->'
MARKDOWN_LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^\s*(```|~~~)')


def _prose_lines(path):
    """(line number, line) of a markdown file outside fenced code blocks."""
    inside = False
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if FENCE.match(line):
                inside = not inside
            elif not inside:
                yield lineno, line


def _anchors(path):
    """The heading anchors GitHub gives a markdown file: lower case, punctuation other than
    '-' and '_' dropped, each space a '-'; a repeated heading gets '-1', '-2', ..."""
    seen = {}
    for _, line in _prose_lines(path):
        m = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if m:
            slug = re.sub(r'[^\w\- ]', '', m.group(1).lower()).replace(' ', '-')
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            yield slug if n == 0 else f'{slug}-{n}'


def _relative_links(path):
    """(line number, target) of every link in ``path`` that is not a URL."""
    for lineno, line in _prose_lines(path):
        for target in MARKDOWN_LINK.findall(line):
            if not re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
                yield lineno, target


def test_the_scan_reads_the_docs_pages():
    """test_documented_paths_exist scans the user guide in docs/ too, not only the README."""
    scanned = {osp.relpath(p, REPO) for p in _doc_files()}
    missing = [p for p in DOC_PAGES if p not in scanned]
    assert not missing, f'not scanned (missing?): {missing}'


def test_readme_is_short():
    """The README says what mmsnn is, the two commands, the front door, the features and
    links; everything else lives in docs/."""
    with open(osp.join(REPO, 'README.md')) as f:
        count = len(f.read().splitlines())
    assert count <= README_MAX_LINES, f'README.md has {count} lines (at most {README_MAX_LINES})'


def test_readme_keeps_the_two_commands():
    """.ci/run runs `make test`: the README's test command is the CI's."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    for command in ('make test', 'make demo'):
        assert re.search(rf'^{command}\b', text, re.M), command


def test_readme_links_every_docs_page():
    """A newcomer reaches every page of the user guide from the README."""
    linked = {osp.normpath(t.split('#')[0]) for _, t in _relative_links(osp.join(REPO, 'README.md'))}
    missing = [p for p in DOC_PAGES if osp.normpath(p) not in linked]
    assert not missing, f'README.md links none of {missing}'


def test_relative_links_resolve():
    """Every relative link of the README, the config READMEs and docs/ names an existing
    file, and its #anchor a heading of that file."""
    broken, checked = [], 0
    for doc in _doc_files():
        for lineno, target in _relative_links(doc):
            checked += 1
            path, _, anchor = target.partition('#')
            dest = osp.normpath(osp.join(osp.dirname(doc), path)) if path else doc
            where = f'{osp.relpath(doc, REPO)}:{lineno}: {target}'
            if not osp.exists(dest):
                broken.append(f'{where} (no such file)')
            elif anchor and (not dest.endswith('.md') or anchor not in set(_anchors(dest))):
                broken.append(f'{where} (no such heading)')
    assert not broken, '\n'.join(broken)
    assert checked >= len(DOC_PAGES)  # the scan found the README's links (so it can fail)


def test_benchmark_block_lives_in_the_benchmarks_page():
    """benchmark.py rewrites the block between its markers: once, in docs/en/benchmarks.md."""
    with open(osp.join(REPO, 'docs/en/benchmarks.md')) as f:
        text = f.read()
    assert text.count(BENCHMARK_BEGIN) == 1 and text.count(BENCHMARK_END) == 1
    assert text.index(BENCHMARK_BEGIN) < text.index(BENCHMARK_END)
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    assert BENCHMARK_BEGIN not in readme and BENCHMARK_END not in readme


def test_measurements_at_a_commit_live_in_the_benchmarks_page():
    """One-run tables tied to a commit are kept in docs/en/benchmarks.md only; the README and
    the guides link there instead of copying numbers that age."""
    found = []
    for doc in _doc_files():
        if osp.relpath(doc, REPO) == 'docs/en/benchmarks.md':
            continue
        with open(doc) as f:
            for lineno, line in enumerate(f, 1):
                if re.search(r'\bcommits? [0-9a-f]{7,40}\b', line):
                    found.append(f'{osp.relpath(doc, REPO)}:{lineno}: {line.strip()}')
    assert not found, '\n'.join(found)


def test_the_scan_sees_the_front_door():
    """The scan above reads the README's front-door commands (so it can fail)."""
    with open(osp.join(REPO, 'README.md')) as f:
        found = set(PATH_IN_DOCS.findall(f.read()))
    assert set(FRONT_DOOR) <= found, found
    assert 'tools/train.py' in found and 'tools/test.py' in found


@pytest.mark.parametrize('config', FRONT_DOOR)
def test_front_door_config_is_the_default_model(config):
    """The short names are the s-size SRB models, loadable with their base toolbox."""
    from mmsnn.utils.config import load_config
    cfg = load_config(osp.join(REPO, config))
    assert cfg.model.backbone.type == 'MetaSDT'
    assert cfg.model.backbone.arch == 's' and cfg.model.backbone.mixer == 'srb'
    assert cfg.default_scope == ('mmdet' if '/det/' in config else 'mmseg')


#: the 3 demo shape classes renamed to COCO classes (any 3 of the 80 would do)
COCO_NAMES = ('person', 'bicycle', 'car')


@pytest.fixture(scope='module')
def coco_like(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco_like')
    # one image per split: the front door is about the commands running, not learning (each
    # image is resized to the config's ~800x1333 scale, seconds per step of the s-size model)
    anns = generate_demo_coco(str(root), num_train=1, num_val=1, image_size=(96, 128),
                              num_classes=3, seed=0)
    for ann_file in anns.values():
        with open(ann_file) as f:
            coco = json.load(f)
        for cat in coco['categories']:
            cat['name'] = COCO_NAMES[cat['id'] - 1]
        with open(ann_file, 'w') as f:
            json.dump(coco, f)
    return str(root) + os.sep


def test_front_door_trains_and_tests(coco_like, tmp_path, run_tool):
    """``tools/train.py configs/det/sdt_srb_coco.py`` trains and validates, and
    ``tools/test.py`` on the same config evaluates its checkpoint: exit 0, COCO metrics. The
    training starts as the user starts it, in a new ``python`` process."""
    config = 'configs/det/sdt_srb_coco.py'
    work_dir = tmp_path / 'sdt_srb_coco'
    small = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=1',
             'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    proc = run_tool('tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
                    f'data_root={coco_like}', *small, timeout=900, fresh=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file(), sorted(os.listdir(work_dir))
    assert 'Epoch(val) [1][1/1]' in proc.stdout + proc.stderr  # validated at the epoch's end

    test_dir = tmp_path / 'test'
    proc = run_tool('tools/test.py', config, checkpoint, '--work-dir', test_dir,
                    '--cfg-options', f'data_root={coco_like}', *small[-2:], timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    logged = proc.stdout + proc.stderr
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert key in logged, logged[-3000:]

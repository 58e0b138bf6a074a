"""``hebbref data list`` and ``hebbref data fetch NAME``.

    hebbref data list [--data-dir D]
        each dataset: images in its official train and test sets, and where it was found
    hebbref data fetch NAME [--data-dir D] [--mirror URL]
        download NAME (mnist, fashion-mnist, cifar10, cifar10-binary, cifar100) into the
        data folder, checking every file against its pinned checksum
"""
import sys

from ..errors import DataError
from . import DATASETS, load_arrays
from .catalog import IDX_NAMES, idx_files, locate
from .fetch import DOWNLOADS, fetch
from .idx import check_idx_length
from .locations import data_folder


def count_images(name, data_dir):
    """(train count, test count, where) for a dataset that is present; raises DataError otherwise."""
    path, reader = locate(name, data_dir)
    if DATASETS[name].layouts and DATASETS[name].layouts[0][0] == "IDX":  # lengths checked, nothing decoded
        found, _ = idx_files(path)
        counts = {}
        for split, (images_name, labels_name) in IDX_NAMES.items():
            images, labels = check_idx_length(found[images_name])[0], check_idx_length(found[labels_name])[0]
            if images != labels:
                raise DataError(f"{found[images_name]} holds {images} images but {found[labels_name]} "
                                f"holds {labels} labels")
            counts[split] = images
        return counts["train"], counts["test"], path
    _, splits = load_arrays(name, data_dir)
    return len(splits["train"][0]), len(splits["test"][0]), path


def list_command(args):
    folder, why = data_folder(args.data_dir)
    print(f"data folder: {folder} ({why})")
    print(f"{'dataset':<20}{'train':>7}{'test':>7}  where")
    for name in DATASETS:
        try:
            train, test, where = count_images(name, args.data_dir)
            print(f"{name:<20}{train:>7}{test:>7}  {where}")
        except DataError as error:
            text = f"missing: run `hebbref data fetch {name}`" if "not found" in str(error) else f"error: {error}"
            print(f"{name:<20}{'-':>7}{'-':>7}  {text}")
    return 0


def fetch_command(args):
    paths = fetch(args.name, data_dir=args.data_dir, mirror=args.mirror, progress=sys.stderr)
    print(f"{args.name}: {len(paths)} file(s) checked in {paths[0].parent}")
    return 0


def add_commands(subparsers):
    data = subparsers.add_parser("data", help="list or download datasets",
                                 description="List the datasets hebbref finds, or download one.")
    commands = data.add_subparsers(dest="data_command", metavar="{list,fetch}", required=True)
    listing = commands.add_parser("list", help="what is present, where, how many images")
    listing.add_argument("--data-dir", help="data folder (default: $HEBBREF_DATA, else ~/.cache/hebbref)")
    listing.set_defaults(func=list_command)
    getting = commands.add_parser("fetch", help="download a dataset and check its checksums")
    getting.add_argument("name", metavar="NAME", help=", ".join(DOWNLOADS))
    getting.add_argument("--data-dir", help="data folder (default: $HEBBREF_DATA, else ~/.cache/hebbref)")
    getting.add_argument("--mirror", metavar="URL", help="base URL holding the same file names")
    getting.set_defaults(func=fetch_command)

"""Make a folder of real image files to try kiln's image_folder pipeline on, with no download.

scikit-learn's bundled handwritten digits (1,797 of them) are written as PNG files, one folder per
class, upscaled from 8x8 and tinted per class: exactly the layout of your own photographs.

    python examples/make_image_folder.py data/digit_images              # 10 classes
    python examples/make_image_folder.py data/two_digits --classes 2    # a two-class problem
    kiln train -c configs/images_cnn.yaml data.path=data/digit_images
"""

from __future__ import annotations

import argparse

from kiln.testing.images import write_digits_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the folder to write (ROOT/<class>/<file>)")
    parser.add_argument("--classes", type=int, default=10, help="how many digit classes (2 to 10)")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all)")
    parser.add_argument("--size", type=int, default=64, help="side of each image in pixels")
    parser.add_argument("--layout", choices=("flat", "splits"), default="flat",
                        help="flat: ROOT/<class>/<file>; splits: ROOT/{train,val,test}/<class>/<file>")
    parser.add_argument("--formats", default="png", help="comma-separated file types used in turn (png,jpg)")
    args = parser.parse_args()
    if not 2 <= args.classes <= 10:
        parser.error("--classes must be between 2 and 10")
    root = write_digits_folder(args.root, classes=args.classes, per_class=args.per_class, size=args.size,
                               formats=tuple(args.formats.split(",")), layout=args.layout)
    count = sum(1 for p in root.rglob("*") if p.is_file())
    print(f"wrote {count} images in {args.classes} class folders under {root}")


if __name__ == "__main__":
    main()

"""``python -m keras_wreg.tuning ...``: the ``keras-wreg tune`` job without the main CLI."""

import sys

from keras_wreg.tuning.command import main

if __name__ == "__main__":
    sys.exit(main())

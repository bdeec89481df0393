"""`python -m text2sql.synthetic --out DIR [--seed N ...]`: write the synthetic Spider-format folder."""
import sys

from text2sql.synthetic import main

sys.exit(main())

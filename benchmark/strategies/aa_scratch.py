"""The A/A control: scratch under another name, compared with scratch like any transfer strategy."""

from benchmark.strategies.base import TransferStrategy


class AaScratch(TransferStrategy):
    """Train from random initialisation, with its own initialisation and data-order randomness.

    Nothing is transferred, so every difference from the ``scratch`` baseline is noise (same split, label subset,
    preprocessing and budget; only the random initialisation and batch order differ). Its verdicts measure the false
    positive rate of the verdict rule on your data: a calibrated harness calls almost every A/A cell inconclusive.
    """

    uses_pretrained = False
    seed_salt = "aa"

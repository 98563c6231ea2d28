"""The bibliography of the report, and how a study names an entry.

A study lists its references in ``Findings.references`` by key (``"srivastava2014"``) or
by a short human form (``"Srivastava et al. 2014"``, ``"Wager, Wang & Liang 2013"``);
:func:`resolve` maps either to the key. An entry that resolves to nothing is printed as
given, so a study may cite a paper that is not in :data:`BIBLIOGRAPHY` yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BIBLIOGRAPHY", "Reference", "resolve"]


@dataclass(frozen=True)
class Reference:
    """One bibliography entry.

    Attributes:
        key: ``surname`` of the first author + year, lower case, e.g. ``"gal2016"``.
        short: how the text cites it, e.g. ``"Gal & Ghahramani 2016"``.
        citation: the full citation.
        url: where to read it (shown as a link; nothing is fetched).
    """

    key: str
    short: str
    citation: str
    url: str = ""


BIBLIOGRAPHY: dict[str, Reference] = {
    r.key: r
    for r in (
        Reference(
            "srivastava2014",
            "Srivastava et al. 2014",
            "Srivastava, N., Hinton, G., Krizhevsky, A., Sutskever, I., & Salakhutdinov, R. "
            "(2014). Dropout: A simple way to prevent neural networks from overfitting. "
            "Journal of Machine Learning Research, 15(56), 1929–1958.",
            "https://jmlr.org/papers/v15/srivastava14a.html",
        ),
        Reference(
            "wager2013",
            "Wager, Wang & Liang 2013",
            "Wager, S., Wang, S., & Liang, P. (2013). Dropout training as adaptive "
            "regularization. Advances in Neural Information Processing Systems 26 "
            "(NIPS 2013), 351–359.",
            "https://arxiv.org/abs/1307.1493",
        ),
        Reference(
            "baldi2013",
            "Baldi & Sadowski 2013",
            "Baldi, P., & Sadowski, P. (2013). Understanding dropout. Advances in Neural "
            "Information Processing Systems 26 (NIPS 2013), 2814–2822.",
        ),
        Reference(
            "gal2016",
            "Gal & Ghahramani 2016",
            "Gal, Y., & Ghahramani, Z. (2016). Dropout as a Bayesian approximation: "
            "Representing model uncertainty in deep learning. Proceedings of the 33rd "
            "International Conference on Machine Learning (ICML 2016), PMLR 48, 1050–1059.",
            "https://arxiv.org/abs/1506.02142",
        ),
        Reference(
            "wei2020",
            "Wei, Kakade & Ma 2020",
            "Wei, C., Kakade, S., & Ma, T. (2020). The implicit and explicit regularization "
            "effects of dropout. Proceedings of the 37th International Conference on Machine "
            "Learning (ICML 2020), PMLR 119, 10181–10192.",
            "https://arxiv.org/abs/2002.12915",
        ),
        Reference(
            "tompson2015",
            "Tompson et al. 2015",
            "Tompson, J., Goroshin, R., Jain, A., LeCun, Y., & Bregler, C. (2015). Efficient "
            "object localization using convolutional networks. Proceedings of the IEEE "
            "Conference on Computer Vision and Pattern Recognition (CVPR 2015), 648–656.",
            "https://arxiv.org/abs/1411.4280",
        ),
        Reference(
            "ghiasi2018",
            "Ghiasi, Lin & Le 2018",
            "Ghiasi, G., Lin, T.-Y., & Le, Q. V. (2018). DropBlock: A regularization method "
            "for convolutional networks. Advances in Neural Information Processing Systems 31 "
            "(NeurIPS 2018).",
            "https://arxiv.org/abs/1810.12890",
        ),
        Reference(
            "greydanus2020",
            "Greydanus 2020",
            "Greydanus, S. (2020). Scaling down deep learning. arXiv preprint arXiv:2011.14439.",
            "https://arxiv.org/abs/2011.14439",
        ),
    )
}

_KEY = re.compile(r"^([a-z]+)(\d{4})$")


def resolve(ref: str) -> str | None:
    """The :data:`BIBLIOGRAPHY` key that ``ref`` names, or ``None``.

    ``ref`` is a key (``"wei2020"``) or any text holding the first author's surname and
    the year (``"Wei, Kakade & Ma 2020"``, ``"Wei et al. (2020)"``); case is ignored.
    """
    text = str(ref).strip().lower()
    if text in BIBLIOGRAPHY:
        return text
    for key in BIBLIOGRAPHY:
        surname, year = _KEY.match(key).groups()
        if re.search(rf"\b{surname}\b", text) and year in text:
            return key
    return None

"""Cluster labels: the terms whose TF-IDF weight is highest inside a cluster relative to the
rest of the failures (mean weight in the cluster minus mean weight outside it)."""

from __future__ import annotations

# Words only (a letter first, then letters/digits/underscores, so tool names like set_timer stay
# whole); bare numbers differ in every task and would only add noise.
TOKEN_PATTERN = r"(?u)\b[^\W\d_][\w]+\b"


def cluster_terms(texts: list[str], labels: list[int], top: int) -> dict[int, list[str]]:
    """cluster -> its `top` characteristic terms (fewer when the cluster has no distinctive ones)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    clusters = sorted(set(labels))
    if not texts:
        return {}
    try:
        vec = TfidfVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english", sublinear_tf=True)
        tfidf = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary: nothing but numbers and stop words
        return {c: [] for c in clusters}
    terms = vec.get_feature_names_out()
    lab = np.asarray(labels)
    out: dict[int, list[str]] = {}
    for c in clusters:
        inside = np.asarray(tfidf[lab == c].mean(axis=0)).ravel()
        rest = lab != c
        outside = np.asarray(tfidf[rest].mean(axis=0)).ravel() if rest.any() else 0.0
        score = inside - outside
        order = np.argsort(-score, kind="stable")[:top]
        out[c] = [str(terms[i]) for i in order if score[i] > 0]
    return out

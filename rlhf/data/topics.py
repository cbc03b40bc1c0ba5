"""Languages and topics of prompts, for the bias audit (``rlhf.data.audit``): a cheap
language id (Unicode script, then stopwords) and prompt clusters (TF-IDF + spherical k-means
in numpy/scipy; scikit-learn is not a dependency). No Django."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

CLUSTERS = 8
MIN_PROMPTS_TO_CLUSTER = 20
EXAMPLE_CHARS = 100


# -- language ---------------------------------------------------------------------------------

_SCRIPT_LANGUAGE = {
    "CYRILLIC": "cyrillic",
    "GREEK": "el",
    "ARABIC": "ar",
    "HEBREW": "he",
    "HANGUL": "ko",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
    "DEVANAGARI": "hi",
    "THAI": "th",
    "BENGALI": "bn",
    "TAMIL": "ta",
    "GEORGIAN": "ka",
    "ARMENIAN": "hy",
}
# Short, frequent function words; a word that is common in two languages is kept out.
_STOPWORDS = {
    "en": "the and is are was were you your what how this that with have for not but can "
    "would should there which they their about from will",
    "es": "el los las una por para con pero como más qué está este esta muy también porque "
    "cuando donde puedo tengo hay del",
    "fr": "les des une est pas pour avec dans sur mais comme vous nous très cette sont être "
    "avoir aussi quand peux",
    "de": "der die das und ist nicht ein eine mit auf für sich auch wie ich sie wir kann "
    "oder wenn aber noch",
    "pt": "os uma não com para por mais como mas você está isso muito também quando onde "
    "tenho pode são",
    "it": "il gli della che non una per con sono come anche questo questa più perché quando "
    "dove posso sei",
    "nl": "het een van niet met voor zijn ook maar als wat hoe dit deze kan wij jij heb",
}
_STOP_INDEX: dict[str, list[str]] = {}
for _language, _words in _STOPWORDS.items():
    for _word in _words.split():
        _STOP_INDEX.setdefault(_word, []).append(_language)
_STOP_INDEX = {w: langs for w, langs in _STOP_INDEX.items() if len(langs) == 1}
_WORD = re.compile(r"[^\W\d_]+")
LANGUAGE_CHARS = 2_000


def language_of(text: str) -> str:
    """A cheap language id: the dominant Unicode script of the letters decides for scripts
    that one language (or family: ``cyrillic``) writes; Latin-script text is told apart by
    stopwords among English, Spanish, French, German, Portuguese, Italian and Dutch, and is
    ``latin`` when no language has at least two stopwords and a clear lead (short prompts,
    other Latin-script languages, code). ``und``: no letters. Only the first 2,000
    characters are read. Mixed-language prompts are given their majority script; Chinese and
    Japanese Kanji-only text both read as ``zh``."""
    text = text[:LANGUAGE_CHARS]
    scripts: Counter = Counter()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            scripts[name.split(" ", 1)[0]] += 1
    if not scripts:
        return "und"
    if scripts["HIRAGANA"] + scripts["KATAKANA"] and scripts["CJK"]:
        scripts["HIRAGANA"] += scripts.pop("CJK")  # Kanji among kana: Japanese
    script = scripts.most_common(1)[0][0]
    if script != "LATIN":
        return _SCRIPT_LANGUAGE.get(script, script.lower())
    votes: Counter = Counter()
    for word in _WORD.findall(text.lower()):
        for language in _STOP_INDEX.get(word, ()):
            votes[language] += 1
    ranked = votes.most_common(2)
    if not ranked or ranked[0][1] < 2:
        return "latin"
    if len(ranked) == 2 and ranked[0][1] < 1.5 * ranked[1][1]:
        return "latin"
    return ranked[0][0]


def language_audit(texts: Sequence[str]) -> dict:
    counts = Counter(language_of(t) for t in texts)
    total = len(texts)
    return {
        "texts": total,
        "languages": [
            {"language": lang, "count": n, "share": round(n / total, 4)}
            for lang, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "method": "Unicode script, then stopwords (en es fr de pt it nl); see docs",
    }


# -- prompt clusters --------------------------------------------------------------------------

_TERM = re.compile(r"[^\W\d_]{3,}")
_CLUSTER_STOPWORDS = frozenset(
    (_STOPWORDS["en"] + " what when where who why how does did can could would should "
     "please tell give make want need know like just some any into than then them these "
     "those been being also only more most other such very").split()
)  # fmt: skip


def tfidf(texts: Sequence[str], *, max_terms: int = 5_000) -> tuple[sparse.csr_matrix, list[str]]:
    """Rows of L2-normalised TF-IDF weights (smoothed idf: ln((1 + n) / (1 + df)) + 1, as
    scikit-learn's default) over words of 3+ letters seen in at least two texts, English
    stopwords out; at most ``max_terms`` terms, the most frequent by document count."""
    docs = [[w for w in _TERM.findall(t.lower()) if w not in _CLUSTER_STOPWORDS] for t in texts]
    df: Counter = Counter()
    for doc in docs:
        df.update(set(doc))
    terms = sorted((t for t, n in df.items() if n >= 2), key=lambda t: (-df[t], t))[:max_terms]
    terms.sort()
    index = {t: i for i, t in enumerate(terms)}
    rows, cols, vals = [], [], []
    for r, doc in enumerate(docs):
        for term, count in Counter(w for w in doc if w in index).items():
            rows.append(r)
            cols.append(index[term])
            vals.append(count)
    n = len(texts)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n, len(terms)), dtype=np.float64)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in terms])
    matrix = matrix @ sparse.diags(idf) if terms else matrix
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix), terms


def spherical_kmeans(
    matrix: sparse.csr_matrix, k: int, *, seed: int = 0, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit rows by cosine similarity (Dhillon & Modha 2001), k-means++ seeding.
    Returns (assignment per row, centroids (k, terms)). Rows with no terms go to cluster 0's
    nearest by similarity 0, like any other: callers count them apart."""
    rng = np.random.default_rng(seed)
    n = matrix.shape[0]
    dense_rows = lambda idx: np.asarray(matrix[idx].todense())  # noqa: E731
    centroids = [dense_rows([int(rng.integers(n))])[0]]
    for _ in range(1, k):
        similarity = np.asarray(matrix @ np.array(centroids).T).max(axis=1)
        distance = np.clip(1.0 - similarity, 0.0, None) ** 2
        total = distance.sum()
        pick = int(rng.integers(n)) if total == 0 else int(rng.choice(n, p=distance / total))
        centroids.append(dense_rows([pick])[0])
    centres = np.array(centroids)  # (k, terms)
    assignment = np.full(n, -1)
    for _ in range(iterations):
        new = np.asarray(matrix @ centres.T).argmax(axis=1)  # (n,)
        if np.array_equal(new, assignment):
            break
        assignment = new
        for c in range(k):
            members = np.flatnonzero(assignment == c)
            if len(members) == 0:
                continue
            centre = np.asarray(matrix[members].sum(axis=0)).ravel()
            norm = np.linalg.norm(centre)
            centres[c] = centre / norm if norm else centre
    return assignment, centres


def cluster_audit(texts: Sequence[str], *, k: int = CLUSTERS, seed: int = 0) -> dict:
    """Topic clusters of prompts: size, share, five top terms and a short example each,
    largest first. Prompts with no clustering term are counted as ``no_terms``."""
    if len(texts) < MIN_PROMPTS_TO_CLUSTER:
        return {"prompts": len(texts), "clusters": [], "no_terms": 0,
                "note": f"fewer than {MIN_PROMPTS_TO_CLUSTER} prompts: not clustered"}  # fmt: skip
    matrix, terms = tfidf(texts)
    has_terms = np.flatnonzero(matrix.getnnz(axis=1) > 0)
    k = max(1, min(k, len(has_terms) // 5))
    out = {"prompts": len(texts), "no_terms": int(len(texts) - len(has_terms)), "k": k}
    if len(has_terms) < k or not terms:
        return {**out, "clusters": [], "note": "too few prompts share a term"}
    assignment, centres = spherical_kmeans(matrix[has_terms], k, seed=seed)
    clusters = []
    for c in range(k):
        members = has_terms[assignment == c]
        if len(members) == 0:
            continue
        top = np.argsort(-centres[c], kind="stable")[:5]
        example = " ".join(texts[int(members[0])].split())
        clusters.append(
            {
                "size": len(members),
                "share": round(len(members) / len(texts), 4),
                "top_terms": [terms[i] for i in top if centres[c][i] > 0],
                "example": example[:EXAMPLE_CHARS] + ("…" if len(example) > EXAMPLE_CHARS else ""),
            }
        )
    clusters.sort(key=lambda c: -c["size"])
    return {**out, "clusters": clusters}

"""Failure analysis (`cogumi failures analyze`): export the judged failures with their rationale,
embed them (Ray Data actors holding an offline sentence-embedding model), cluster the embeddings
(KMeans, k by silhouette or from config), label each cluster by its characteristic terms, and
report per domain and cluster.

    config.py   the `failures` config section
    read.py     failures (or judgments filtered to 'fail') as a Ray Dataset, columns checked
    embed.py    the text of each failure -> a normalised embedding, on Ray Data
    kmeans.py   KMeans with k chosen by silhouette, clusters numbered by size
    label.py    TF-IDF terms that set a cluster apart from the rest
    report.py   the JSON + Markdown report
    stage.py    the pipeline stage
"""

"""Admin: who may operate the reactor (auth), and what operators read and do (status, audit
lineage, dead letters and their replay, the OpenAPI description, the status page).

Pure core: nothing here imports azure.functions; ``functions/admin.py`` and
``functions/dashboard.py`` are the thin HTTP edges.
"""

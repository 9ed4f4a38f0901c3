"""Machine-learning side of mlops-reactor: the diabetes ridge model, its data contract, the
champion/challenger gate, registration, the scoring script and the Azure ML pipeline that runs them.

Each script is both importable and runnable (``python -m ml.train`` ...); see ml/README.md.
"""

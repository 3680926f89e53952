"""`make bench`: the same stateful workload through a raw confluent-kafka loop, a Kappa Agents
agent, a default faust agent, faust over take() batches and a quixstreams app, on one broker in one run (``python -m bench.run``)."""

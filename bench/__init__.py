"""`make bench`: the same stateful workload through a raw confluent-kafka loop, a Kappa Agents
agent and a default faust agent, on one broker in one run (``python -m bench.run``)."""

"""Kappa Agents: a Kafka-native runtime for multi-agent AI systems."""

"""graphmoe.federated"""

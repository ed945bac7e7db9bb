"""Wire formats: msgpack column frames of the data plane, the control-plane messages between actors,
and the query protocol (requests validated field by field, answered from a `RankingStore`).

Pure: bytes in, dataclasses out. May import `scanner.model` (feature names).
"""

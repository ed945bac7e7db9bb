"""`arbscan bench …`: each benchmark measures the fast way and the naive way in one run and returns
one dict (printed as one JSON line). The end-to-end benchmark needs Ray and lives in `actors/`.
"""

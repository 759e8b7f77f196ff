"""HMM inference engines: forward-backward, Viterbi, Baum-Welch and Pyro models.

Pure functions over arrays/tensors; no file I/O (except parameter save/load), no printing.
"""

"""Tokenizer kinds and what a tokenizer directory says; the wrapper every family uses is :mod:`bertkit.tokenizer`.

``wordpiece`` (BERT's exact pipeline and training), ``bpe`` (RoBERTa's byte-level BPE), ``layout`` (special
tokens around one text or a pair, read from the post-processor), ``specials`` (special tokens by role,
token types). A Unigram tokenizer needs no module of its own while it comes as tokenizer.json; reading a
SentencePiece ``spiece.model`` directly would be one more kind here.
"""

"""The concept bank of encoder pretraining by cluster discrimination (PAPER.md section 4).

    extract   teacher embeddings of listed images or videos    extract.py (teacher.py, media.py)
    cluster   spherical k-means centres of those embeddings    cluster.py (kmeans.py: faiss)
    assign    each sample's top-k nearest centres: its labels  assign.py
    ocr       word-class labels of images from their texts     ocr_labels.py

The files they write (safetensors + Arrow, sharded and resumable) are described in `store.py`;
`ovmllm concepts ...` runs them. Nothing is imported here, so reading labels stays light.
"""

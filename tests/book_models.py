"""The book's custom layers and subclassed model, as Deep Learning with Python writes them,
over a layers, an ops and a models module: kiln's for the frontend's tests, keras's for the
oracle's, so both run the same source."""

from __future__ import annotations

from typing import Any


def text_classifier_layers(L: Any, O: Any, M: Any) -> tuple[type, type]:  # noqa: N803
    """Chapter 11's TransformerEncoder and PositionalEmbedding."""

    class TransformerEncoder(L.Layer):
        def __init__(self, embed_dim: int, dense_dim: int, num_heads: int,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.embed_dim, self.dense_dim, self.num_heads = embed_dim, dense_dim, num_heads
            self.attention = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.dense_proj = M.Sequential([L.Dense(dense_dim, activation="relu"),
                                            L.Dense(embed_dim)])
            self.layernorm_1 = L.LayerNormalization()
            self.layernorm_2 = L.LayerNormalization()

        def call(self, inputs: Any, mask: Any = None) -> Any:
            if mask is not None:
                mask = mask[:, None, :]
            attention_output = self.attention(inputs, inputs, attention_mask=mask)
            proj_input = self.layernorm_1(inputs + attention_output)
            proj_output = self.dense_proj(proj_input)
            return self.layernorm_2(proj_input + proj_output)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "embed_dim": self.embed_dim,
                    "dense_dim": self.dense_dim, "num_heads": self.num_heads}

    class PositionalEmbedding(L.Layer):
        def __init__(self, sequence_length: int, input_dim: int, output_dim: int,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.token_embeddings = L.Embedding(input_dim=input_dim, output_dim=output_dim)
            self.position_embeddings = L.Embedding(input_dim=sequence_length,
                                                   output_dim=output_dim)
            self.sequence_length, self.input_dim, self.output_dim = (sequence_length,
                                                                     input_dim, output_dim)

        def call(self, inputs: Any) -> Any:
            positions = O.arange(0, O.shape(inputs)[-1], 1)
            return self.token_embeddings(inputs) + self.position_embeddings(positions)

        def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
            return O.not_equal(inputs, 0)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "sequence_length": self.sequence_length,
                    "input_dim": self.input_dim, "output_dim": self.output_dim}

    return TransformerEncoder, PositionalEmbedding


def customer_ticket_model(L: Any, M: Any) -> type:  # noqa: N803
    """Chapter 7's subclassed model (no get_config: plain arguments save themselves)."""

    class CustomerTicketModel(M.Model):
        def __init__(self, num_departments: int) -> None:
            super().__init__()
            self.concat_layer = L.Concatenate()
            self.mixing_layer = L.Dense(64, activation="relu")
            self.priority_scorer = L.Dense(1, activation="sigmoid")
            self.department_classifier = L.Dense(num_departments, activation="softmax")

        def call(self, inputs: dict) -> tuple:
            title = inputs["title"]
            text_body = inputs["text_body"]
            tags = inputs["tags"]
            features = self.concat_layer([title, text_body, tags])
            features = self.mixing_layer(features)
            priority = self.priority_scorer(features)
            department = self.department_classifier(features)
            return priority, department

    return CustomerTicketModel

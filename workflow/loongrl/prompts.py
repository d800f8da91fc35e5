"""The prompts the policy sees, and how their length is measured.

Texts are the paper's and the official code's (spec §1.5): the LoongRL system prompt [P Fig. 5], the plain
multi-hop QA user message and the KeyChain user message [LR data_preprocess].
"""

from __future__ import annotations

from typing import Any

from loongrl.tokens import count_tokens

LOONGRL_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with the answer. "
    "The reasoning process is enclosed within <think> </think> and answer is enclosed within \\boxed{} tags, "
    "respectively, i.e., <think> reasoning process here </think> \\boxed{answer here}."
)

PLAIN_QA_TEMPLATE = "The following are given passages.\n{context}\n\nQuestion: {question}"
# [KC filter_question] the difficulty filter's prompt for a non-reasoning model (Qwen2.5-32B-Instruct), answered in
# "The answer is ..." form; the eval's instruct kind gets it on LongBench v1 QA (loongrl.eval.kinds)
FILTER_QA_TEMPLATE = (
    "The following are given passages.\n{context}\n\n"
    "Answer the question based on the given passages. Please think step by step before answering. "
    "After thinking, output the final answer in the format of 'The answer is <your answer here>'\n\n"
    "Question: {question}"
)

KEYCHAIN_TEMPLATE = (
    "Please read the following text.\n{context}\n\n"
    "In the context above, there is one correct question to answer. The correct question can only be found by "
    "following the correct consecutive chain of key:value pairs encoded with UUID strings "
    "(e.g., f81d4fae-7dec-11d0-a765-00a0c91e6bf6), starting from {start_key}.\n"
    "Find the correct question first, then answer it."
)
# The KeyChain prompt's last line. ``paper`` is the authors'. ``answer`` (ours, for KeyChain over Book-RULER
# questions on a small model) asks for the question's answer in the same reply: SmolLM2-135M given the paper's line
# names a question and stops (benchmarks/keychain_ladder.py), which no answer verifier can reward.
KEYCHAIN_ENDINGS = {
    "paper": "Find the correct question first, then answer it.",
    "answer": "Find the correct question first, then answer it. Reply with the correct question, then with its "
    "answer: the number it asks for.",
    "ask": "Find the correct question first, then answer it. What is the special magic number that the correct "
    "question asks for?",
}
# An answer prefix for KeyChain over Book-RULER questions on a small instruct model (the start of its reply, as
# RULER's answer prefixes for non-reasoning models): none of the endings above gets SmolLM2-135M past naming a
# question (benchmarks/keychain_ladder.py, 16-row probes: 0 % correct with each), while with this prefix it states a
# needle's number in most replies, so the chain it picked is what the reward sees.
KEYCHAIN_ANSWER_PREFIX = "The special magic number that the correct question asks for is"


def system_prompt(name: str) -> str | None:
    """Resolve the config's ``mixture.system_prompt`` name."""
    return {"loongrl": LOONGRL_SYSTEM_PROMPT, "none": None}[name]


def messages(user: str, system: str | None, prefill: str | None = None) -> list[dict[str, str]]:
    """TRL's conversational prompt format: a list of role/content turns; ``prefill`` starts the assistant's reply
    (RULER's answer prefix for non-reasoning models), which the model continues."""
    turns = [{"role": "system", "content": system}] if system else []
    reply = [{"role": "assistant", "content": prefill}] if prefill else []
    return [*turns, {"role": "user", "content": user}, *reply]


def prefilled(msgs) -> bool:
    """Whether a conversation ends in a started assistant turn (an answer prefix the model continues)."""
    return bool(msgs) and msgs[-1]["role"] == "assistant"


def chat_text(tokenizer, msgs) -> str:
    """A conversation as the model sees it: ending in the assistant header, or inside a prefilled assistant turn
    (``continue_final_message``: no end-of-turn token after the prefill)."""
    msgs = list(msgs)
    if prefilled(msgs):
        return tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=False, continue_final_message=True
        )
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def plain_messages(question: str, context: str, system: str | None) -> list[dict[str, str]]:
    return messages(PLAIN_QA_TEMPLATE.format(context=context, question=question), system)


def passage_block(i: int, doc: dict[str, Any]) -> str:
    """One document in the official ``Passage i:`` format (i from 1)."""
    return f"Passage {i}:\n{doc['title']}\n{doc['text']}"


def join_passages(docs: list[dict[str, Any]]) -> str:
    return "\n\n".join(passage_block(i, d) for i, d in enumerate(docs, 1))


def count_prompt_tokens(tokenizer, msgs: list[dict[str, str]]) -> int:
    """Exact token count of a chat prompt as the trainer tokenises it (with the assistant header)."""
    return chat_token_counts(tokenizer, [msgs])[0]


def token_stats(counts: list[int]) -> dict[str, int | None]:
    """Min / median / max of prompt token counts, as the stage stats files report them."""
    toks = sorted(counts)
    return {
        "prompt_tokens_min": toks[0] if toks else None,
        "prompt_tokens_median": toks[len(toks) // 2] if toks else None,
        "prompt_tokens_max": toks[-1] if toks else None,
    }


def chat_token_counts(tokenizer, conversations: list[list[dict[str, str]]]) -> list[int]:
    """Exact token counts of many chat prompts (with the assistant header) in one batched call."""
    return count_tokens_batch(tokenizer, [chat_text(tokenizer, m) for m in conversations])


def count_tokens_batch(tokenizer, texts: list[str]) -> list[int]:
    """Exact token counts of many texts: tiktoken for the Qwen2.5 vocabulary, else one batched HF call."""
    return count_tokens(tokenizer, texts)

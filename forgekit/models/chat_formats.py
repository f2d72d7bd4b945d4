"""Chat templates as plain strings: how each model family lays out a conversation (the
`template:` of a model profile names one). Magpie sends the left side of a user turn — the
pre-query template — so the model writes the user's query itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgekit.errors import ConfigError

QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# SmolLM2's chat template inserts this system turn when a conversation has none; the model
# writes far more plausible queries when the pre-query text carries it too.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class ChatFormat:
    """How one model family lays out a conversation, as plain strings."""

    name: str
    bos: str
    turns: dict[str, str]  # role -> one message, format with {content}; no "system": no role
    stops: tuple[str, ...]
    default_system: str | None = None

    @property
    def user_prefix(self) -> str:
        """The left side of a user turn: the pre-query template."""
        return self.turns["user"].split("{content}")[0]

    def cut(self, text: str) -> str:
        """A completion up to the first of the family's stop strings (one turn's text)."""
        for stop in self.stops:
            text = text.split(stop, 1)[0]
        return text.strip()


def _roles(message: str, assistant: str = "assistant", system: bool = True) -> dict[str, str]:
    """The turns of a family whose messages differ only in the role's name ({role})."""
    names = {"user": "user", "assistant": assistant, **({"system": "system"} if system else {})}
    return {role: message.replace("{role}", name) for role, name in names.items()}


def _inst(name: str, system: str, assistant: str) -> ChatFormat:
    """Mistral and Llama-2: the system text goes inside the first [INST]."""
    turns = {"system": system, "user": "[INST] {content} [/INST]", "assistant": assistant}
    return ChatFormat(name, "<s>", turns, ("[/INST]", "[INST]", "</s>"))


_CHATML = _roles("<|im_start|>{role}\n{content}<|im_end|>\n")
_CHATML_STOPS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
_LLAMA3 = _roles("<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>")
_LLAMA3_STOPS = ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>")
_GEMMA2 = _roles("<start_of_turn>{role}\n{content}<end_of_turn>\n", "model", system=False)
_PHI3_STOPS = ("<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>")
CHAT_FORMATS: dict[str, ChatFormat] = {
    fmt.name: fmt
    for fmt in (
        ChatFormat("chatml", "", _CHATML, _CHATML_STOPS),
        ChatFormat("smollm2", "", _CHATML, _CHATML_STOPS, SMOLLM2_SYSTEM),
        ChatFormat("qwen2", "", _CHATML, _CHATML_STOPS),
        ChatFormat("qwen2.5", "", _CHATML, _CHATML_STOPS, QWEN25_SYSTEM),
        ChatFormat("llama3", "<|begin_of_text|>", _LLAMA3, _LLAMA3_STOPS),
        ChatFormat("gemma2", "<bos>", _GEMMA2, ("<end_of_turn>", "<start_of_turn>", "<eos>")),
        ChatFormat("phi3", "<s>", _roles("<|{role}|>\n{content}<|end|>\n"), _PHI3_STOPS),
        _inst("mistral", "{content}\n\n", " {content}</s>"),
        _inst("llama2", "<<SYS>>\n{content}\n<</SYS>>\n\n", " {content} </s><s>"),
    )
}


def pre_query_text(fmt: ChatFormat, system: str | None, turns: list[tuple[str, str]]) -> str:
    """The text up to where the next user message would begin: the system turn (or the
    family's default system), the conversation so far, then the pre-query template."""
    system = system if system is not None else fmt.default_system
    if system and "system" not in fmt.turns:
        raise ConfigError(f"template {fmt.name!r} has no system role, so --system cannot steer it")
    block = fmt.turns["system"].format(content=system) if system else ""
    inside = fmt.turns["user"].startswith("[INST]")  # the system text opens the first [INST]
    text = fmt.bos + ("" if inside else block)
    for position, (user, assistant) in enumerate(turns):
        user = block + user if inside and position == 0 else user
        text += fmt.turns["user"].format(content=user)
        text += fmt.turns["assistant"].format(content=assistant)
    return text + fmt.user_prefix + (block if inside and not turns else "")

"""Full LoRA fine-tuning runs and their exact-match evaluation (the ground truth the predictor learns)."""

from tuneahead_ray.training._encode import EncodedPairs, collate, encode_pairs
from tuneahead_ray.training._evaluate import (
    SCORING_TOKEN_BUDGET,
    AnswerScores,
    answer_agreement,
    answer_token_losses,
    eval_mode,
    exact_match,
    exact_match_by_group,
    next_token_logprobs,
    score_rows,
)
from tuneahead_ray.training._head import (
    answer_head_loss,
    answer_scores_from_hidden,
    decoder_hidden_states,
    uses_answer_head,
)
from tuneahead_ray.training._memory import BatchTooLargeError, MemoryPlan, plan_memory
from tuneahead_ray.training._run import Benchmark, BenchmarkScore, FinishedRun, finish_run, train_to_end
from tuneahead_ray.training._trainer import (
    StepRecord,
    StepTrainer,
    attach_adapter,
    detach_adapter,
    length_grouped,
    lora_config,
)

__all__ = [
    "SCORING_TOKEN_BUDGET",
    "AnswerScores",
    "BatchTooLargeError",
    "Benchmark",
    "BenchmarkScore",
    "FinishedRun",
    "finish_run",
    "MemoryPlan",
    "answer_head_loss",
    "answer_scores_from_hidden",
    "decoder_hidden_states",
    "answer_agreement",
    "answer_token_losses",
    "eval_mode",
    "train_to_end",
    "EncodedPairs",
    "StepRecord",
    "StepTrainer",
    "attach_adapter",
    "collate",
    "detach_adapter",
    "encode_pairs",
    "exact_match",
    "exact_match_by_group",
    "length_grouped",
    "lora_config",
    "next_token_logprobs",
    "plan_memory",
    "score_rows",
    "uses_answer_head",
]

"""Human review before delivery: the policy (which assets a person must see, and why) and the
queue of held assets on disk (`OUT/.review/<asset>/`), delivered or dropped on the reviewer's word.

No Prefect here: the flow suspends and resumes (flows/review.py); the CLI finishes what
`assetline run` held (commands/review.py).
"""

"""The labelled account-judgement benchmark: generated traffic of many kinds of accounts
(:mod:`bench.judgement.generate`) judged by the account engine as a user would run it
(:mod:`bench.judgement.run`)."""

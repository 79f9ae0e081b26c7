"""Execution: the task function (``task``), the executors that run it (``local``, ``ray_executor``) and the
driver that writes a run's shards and result (``driver``).

Workers import ``runner.execute.task`` only; nothing here imports the driver.
"""

"""Async invocation: durable tasks, the dispatcher that runs them, retries and age."""

// A plain AWS Lambda handler: nothing in it knows about funclet.
//
//   .venv/bin/funclet invoke lambda-node --payload '{"name": "funclet"}'
export const handler = async (event, context) => {
  console.log(`request ${context.awsRequestId}, ${context.getRemainingTimeInMillis()} ms left`);
  return { message: `hello, ${event.name ?? 'world'}!`, function: context.functionName };
};

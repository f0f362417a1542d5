// An app that crashes shortly after it starts, with exit code 3.
console.error('crash: about to exit');
setTimeout(() => process.exit(3), 50);

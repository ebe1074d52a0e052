// Runs at build time: proves config vars reach the build.
const fs = require('fs');
fs.writeFileSync('greeting.txt', process.env.GREETING || 'no greeting');

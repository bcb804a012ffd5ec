// The application's MongoDB user: readWrite on its own database and nothing else.
// The root user stays with the database (for the operator); the API never holds it.
//
// The mongo image runs /docker-entrypoint-initdb.d/*.js with mongosh, as root, once,
// when it initialises an empty data directory. Used by k8s/mongodb (values from the
// mounted Secret tasks-api-mongodb) and compose.yaml (values from .env).
// Each setting is NAME or, for a mounted Secret, NAME_FILE.
const fs = require('fs');

function setting(name) {
  const file = process.env[`${name}_FILE`];
  // One trailing line end dropped, as the API does when it reads the same file.
  const value = file ? fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '') : process.env[name];
  if (!value) {
    throw new Error(`${name} or ${name}_FILE must be set`);
  }
  return value;
}

const database = setting('MONGO_APP_DATABASE');
db.getSiblingDB(database).createUser({
  user: setting('MONGO_APP_USERNAME'),
  pwd: setting('MONGO_APP_PASSWORD'),
  roles: [{ role: 'readWrite', db: database }],
});
print(`created the application's user in ${database} (readWrite on ${database} only)`);

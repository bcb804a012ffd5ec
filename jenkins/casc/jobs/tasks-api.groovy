// Job DSL (seeded by JCasC's `jobs:`): the pipeline job that runs the repository's
// Jenkinsfile from the private repository.
pipelineJob('tasks-api') {
    description('tasks-api CD: test, SonarQube quality gate, image, deploy (Jenkinsfile)')
    properties {
        disableConcurrentBuilds()
    }
    logRotator {
        numToKeep(30)
    }
    definition {
        cpsScm {
            scm {
                git {
                    remote {
                        url(System.getenv('TASKS_API_GIT_URL') ?: 'https://github.com/example/tasks-api.git')
                        credentials('github-repo')
                    }
                    branch('*/main')
                }
            }
            scriptPath('Jenkinsfile')
            lightweight(true)
        }
    }
    triggers {
        pollSCM {
            scmpoll_spec('H/5 * * * *')
        }
    }
}

// Runs once at every start, before JCasC applies: settings JCasC has no key for.
import jenkins.model.Jenkins
import jenkins.security.s2m.AdminWhitelistRule

Jenkins jenkins = Jenkins.get()
// No builds on the controller's own JVM beyond its executors; agents cannot
// reach back into the controller's file system.
jenkins.injector.getInstance(AdminWhitelistRule).masterKillSwitch = false
// The CLI over remoting is gone in current cores; keep the Jenkins URL explicit so
// links in notifications never point at the container's hostname.
String url = System.getenv('JENKINS_URL')
if (url) {
    jenkins.model.JenkinsLocationConfiguration.get().url = url
}
jenkins.save()
